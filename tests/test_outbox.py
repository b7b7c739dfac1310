"""The outbox sweep and the claimed try, through the services, on any database. The queue is Django's Tasks
framework: its dummy backend keeps a message and never runs it (a message the broker lost, a worker that died), its
immediate backend runs it at once. The real worker processes are in test_worker_outbox.py and
test_tasks_delivery.py."""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core import mail
from django.core.management import call_command
from django.test import RequestFactory, override_settings
from django.utils import timezone

from django_emailotp import signals
from django_emailotp.conf import app_settings
from django_emailotp.exceptions import DeliveryUnavailable
from django_emailotp.models import (
    AuditEvent,
    AuditEventType,
    Challenge,
    ChallengeStatus,
    DeliveryStatus,
    Notice,
)
from django_emailotp.services import (
    SweepReport,
    VerifyReason,
    deliver_challenge,
    issue_challenge,
    sweep_deliveries,
    verify_challenge,
)
from django_emailotp.tasks import send_notice_email
from django_emailotp.tasks import sweep_deliveries as sweep_task
from tests.conftest import code_from

pytestmark = pytest.mark.django_db

FRAMEWORK = "django.tasks" if importlib.util.find_spec("django.tasks") else "django_tasks"
LOSES_EVERY_MESSAGE = {"default": {"BACKEND": f"{FRAMEWORK}.backends.dummy.DummyBackend"}}
RUNS_AT_ONCE = {"default": {"BACKEND": f"{FRAMEWORK}.backends.immediate.ImmediateBackend"}}
ISSUED = AuditEventType.CHALLENGE_ISSUED
SENT = AuditEventType.CHALLENGE_SENT
REDISPATCHED = AuditEventType.DELIVERY_REDISPATCHED
FAILED = AuditEventType.DELIVERY_FAILED


def trail(challenge: Challenge) -> list[tuple[str, str]]:
    return list(AuditEvent.objects.filter(challenge_id=challenge.pk).order_by("id").values_list("event", "reason"))


@pytest.fixture
def lost(user: Any, django_capture_on_commit_callbacks: Any) -> Iterator[Challenge]:
    """A challenge whose queued message was lost: the row says "queued", nothing will ever run it."""
    with override_settings(EMAIL_OTP_DELIVERY="tasks", TASKS=LOSES_EVERY_MESSAGE):
        with django_capture_on_commit_callbacks(execute=True):
            challenge = issue_challenge(user=user, purpose="step_up")
        with override_settings(TASKS=RUNS_AT_ONCE):
            yield Challenge.objects.get(pk=challenge.pk)


@pytest.fixture
def failures() -> Iterator[list[dict[str, Any]]]:
    received: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        received.append({key: kwargs[key] for key in ("error", "transient", "final")})

    signals.challenge_delivery_failed.connect(receiver)
    yield received
    signals.challenge_delivery_failed.disconnect(receiver)


def test_a_lost_delivery_waits_for_its_deadline_then_the_sweep_sends_it_once(lost: Challenge) -> None:
    assert (lost.delivery_status, lost.delivery_attempts) == (DeliveryStatus.QUEUED, 0)
    assert lost.delivery_deadline == lost.created_at + timedelta(seconds=app_settings.DELIVERY_LEASE)
    assert mail.outbox == []

    assert sweep_deliveries(lost.delivery_deadline - timedelta(microseconds=1)) == SweepReport()
    assert sweep_deliveries(lost.delivery_deadline) == SweepReport(redispatched=1)

    [message] = mail.outbox
    row = Challenge.objects.get(pk=lost.pk)
    assert (row.delivery_status, row.delivery_attempts, row.delivery_deadline) == (DeliveryStatus.SENT, 1, None)
    assert trail(lost) == [(ISSUED, ""), (REDISPATCHED, "lease_expired"), (SENT, "")]
    assert sweep_deliveries(timezone.now() + timedelta(seconds=app_settings.CODE_TTL - 1)) == SweepReport()
    assert verify_challenge(lost.pk, code_from(message)).success


def test_the_lost_message_arriving_late_sends_nothing_once_its_try_is_taken(lost: Challenge) -> None:
    assert sweep_deliveries(lost.delivery_deadline) == SweepReport(redispatched=1)
    [message] = mail.outbox
    before = Challenge.objects.values().get(pk=lost.pk)

    assert deliver_challenge(lost.pk, final=False, attempt=0) == DeliveryStatus.SKIPPED

    assert mail.outbox == [message]
    assert Challenge.objects.values().get(pk=lost.pk) == before  # nothing written, the code still works
    assert trail(lost) == [(ISSUED, ""), (REDISPATCHED, "lease_expired"), (SENT, "")]
    assert verify_challenge(lost.pk, code_from(message)).success


def test_a_delivery_whose_every_try_was_used_is_ended_as_failed(
    lost: Challenge, failures: list[dict[str, Any]]
) -> None:
    # Its last try was claimed (the row counts it) and never reported back: the worker died.
    tries = app_settings.DELIVERY_MAX_RETRIES + 1
    Challenge.objects.filter(pk=lost.pk).update(delivery_attempts=tries, delivery_status=DeliveryStatus.RETRYING)

    assert sweep_deliveries(lost.delivery_deadline) == SweepReport(failed=1)

    row = Challenge.objects.get(pk=lost.pk)
    assert (row.delivery_status, row.delivery_error, row.delivery_deadline) == (
        DeliveryStatus.FAILED,
        "WorkerLost",
        None,
    )
    assert trail(lost) == [(ISSUED, ""), (FAILED, "abandoned")]
    assert AuditEvent.objects.get(challenge_id=lost.pk, event=FAILED).data == {"attempts": tries}
    assert failures == [{"error": "WorkerLost", "transient": True, "final": True}]
    assert mail.outbox == []
    assert sweep_deliveries(lost.delivery_deadline + timedelta(seconds=1)) == SweepReport()


def test_a_queue_that_refuses_leaves_the_row_for_the_next_sweep(lost: Challenge) -> None:
    with override_settings(EMAIL_OTP_TASKS_QUEUE="nobody-takes-this-queue"):  # not in the backend's QUEUES
        assert sweep_deliveries(lost.delivery_deadline) == SweepReport(unavailable=1)
    row = Challenge.objects.get(pk=lost.pk)
    assert row.delivery_status == DeliveryStatus.QUEUED
    assert row.delivery_deadline == lost.delivery_deadline + timedelta(seconds=app_settings.DELIVERY_LEASE)
    assert mail.outbox == []

    assert sweep_deliveries(row.delivery_deadline) == SweepReport(redispatched=1)
    assert len(mail.outbox) == 1
    assert trail(lost) == [(ISSUED, ""), (REDISPATCHED, "lease_expired"), (REDISPATCHED, "lease_expired"), (SENT, "")]


def test_the_sweep_leaves_expired_failed_unwanted_and_in_process_deliveries_alone(lost: Challenge) -> None:
    due = lost.delivery_deadline
    expired = lost.expires_at
    Challenge.objects.filter(pk=lost.pk).update(send_email=False)
    assert sweep_deliveries(due) == SweepReport()  # an unknown address's sign-in: nothing to send
    Challenge.objects.filter(pk=lost.pk).update(send_email=True, delivery_status=DeliveryStatus.FAILED)
    assert sweep_deliveries(due) == SweepReport()  # the broker was down when it was issued: the user was told
    Challenge.objects.filter(pk=lost.pk).update(delivery_status=DeliveryStatus.QUEUED)
    assert sweep_deliveries(expired) == SweepReport()  # the code can no longer be used
    Challenge.objects.filter(pk=lost.pk).update(status=ChallengeStatus.SUPERSEDED)
    assert sweep_deliveries(due) == SweepReport()  # a newer code replaced it
    Challenge.objects.filter(pk=lost.pk).update(status=ChallengeStatus.PENDING)
    with override_settings(EMAIL_OTP_DELIVERY="sync"):
        assert sweep_deliveries(due) == SweepReport()  # no queue: nothing to hand it to
    assert mail.outbox == []
    assert sweep_deliveries(due) == SweepReport(redispatched=1)


def test_the_command_and_the_celery_task_run_the_sweep(lost: Challenge) -> None:
    out = StringIO()
    call_command("emailotp_sweep", stdout=out)
    assert out.getvalue() == (
        "Swept:\n"
        "         0  deliveries queued again\n"
        "         0  deliveries failed (every try used, the last never finished)\n"
        "         0  deliveries the queue refused (tried again by the next sweep)\n"
    )
    Challenge.objects.filter(pk=lost.pk).update(delivery_deadline=timezone.now() - timedelta(seconds=1))

    assert sweep_task.name == "emailotp.sweep"
    assert sweep_task.apply().get() == {"redispatched": 1, "failed": 0, "unavailable": 0}
    assert len(mail.outbox) == 1


@override_settings(EMAIL_OTP_DELIVERY="tasks", TASKS=RUNS_AT_ONCE, EMAIL_OTP_TASKS_QUEUE="nobody-takes-this-queue")
def test_a_tasks_backend_that_refuses_at_issue_time_is_a_broker_that_is_down(
    user: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with (
        pytest.raises(DeliveryUnavailable, match="task backend could not take the job"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        issue_challenge(user=user, purpose="step_up")

    row = Challenge.objects.get(user=user)
    assert (row.delivery_status, row.delivery_deadline) == (DeliveryStatus.FAILED, None)
    assert [event for event, _ in trail(row)] == [ISSUED, AuditEventType.DELIVERY_UNAVAILABLE]
    assert mail.outbox == []


@override_settings(EMAIL_OTP_DELIVERY="tasks", TASKS=RUNS_AT_ONCE, EMAIL_OTP_LOCKOUT_THRESHOLD=1)
def test_a_notice_through_the_tasks_framework_reads_its_row_and_deletes_it(
    user: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        challenge = issue_challenge(user=user, purpose="step_up")
    code = code_from(mail.outbox[0])
    request = RequestFactory().post("/", REMOTE_ADDR="198.51.100.20", HTTP_USER_AGENT="Firefox on Linux")
    with django_capture_on_commit_callbacks(execute=True):
        result = verify_challenge(challenge.pk, "000000" if code != "000000" else "111111", request=request)

    assert result.reason == VerifyReason.INVALID_CODE
    [_, notice] = mail.outbox
    assert notice.to == ["alice@example.com"]
    assert "198.51.100.20" in str(notice.body)  # read from the Notice row, never from the queue
    assert Notice.objects.count() == 0
    assert AuditEvent.objects.filter(event=AuditEventType.NOTICE_SENT, reason="locked_out").count() == 1


def test_a_notice_message_whose_row_is_gone_sends_nothing() -> None:
    # A redelivered message after the notice was sent (its row is deleted then): nothing is sent twice.
    assert send_notice_email.apply(args=(str(uuid.uuid4()),)).get() is False
    assert mail.outbox == []
