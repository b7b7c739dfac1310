"""Django's Tasks framework as the queue (``EMAIL_OTP_DELIVERY = "tasks"``): ``django.tasks`` on Django 6, the
``django-tasks`` backport on 5.2. The immediate backend in-process, then the real thing: django-tasks-db's database
backend on PostgreSQL with its worker process (``manage.py db_worker``), an SMTP server, the same retry and outbox
rules as Celery."""

from __future__ import annotations

import importlib.util
import socket
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from django.test import override_settings

from django_emailotp.conf import app_settings
from django_emailotp.models import AuditEvent, AuditEventType, Challenge, DeliveryStatus
from django_emailotp.services import SweepReport, issue_challenge, sweep_deliveries, verify_challenge
from tests.conftest import code_from
from tests.factories import UserFactory
from tests.mailservers import SMTPServer, code_in, running_smtp_server, wait_until
from tests.signal_probe import recorded
from tests.worker import TasksWorker, running_tasks_worker

ISSUED = AuditEventType.CHALLENGE_ISSUED
SENT = AuditEventType.CHALLENGE_SENT
RETRY = AuditEventType.DELIVERY_RETRY
FAILED = AuditEventType.DELIVERY_FAILED
REDISPATCHED = AuditEventType.DELIVERY_REDISPATCHED
FRAMEWORK = "django.tasks" if importlib.util.find_spec("django.tasks") else "django_tasks"
IMMEDIATE = {"default": {"BACKEND": f"{FRAMEWORK}.backends.immediate.ImmediateBackend"}}


def trail(challenge: Challenge) -> list[tuple[str, str]]:
    return list(AuditEvent.objects.filter(challenge_id=challenge.pk).order_by("id").values_list("event", "reason"))


# ---------------------------------------------------------------------------------------------------------------
# The immediate backend (runs the task inside enqueue): the wiring, on every database


@pytest.mark.django_db
@override_settings(EMAIL_OTP_DELIVERY="tasks", TASKS=IMMEDIATE)
def test_the_immediate_backend_sends_the_code_through_the_task(
    user: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        challenge = issue_challenge(user=user, purpose="step_up")

    [message] = mail.outbox
    assert message.to == ["alice@example.com"]
    row = Challenge.objects.get(pk=challenge.pk)
    assert (row.delivery_status, row.delivery_attempts, row.delivery_deadline) == (DeliveryStatus.SENT, 1, None)
    assert trail(challenge) == [(ISSUED, ""), (SENT, "")]
    assert verify_challenge(challenge.pk, code_from(message)).success


# ---------------------------------------------------------------------------------------------------------------
# The database backend and its worker process


@pytest.fixture(scope="module")
def smtp_server() -> Iterator[SMTPServer]:
    with running_smtp_server() as server:
        yield server


@pytest.fixture
def tasks_delivery() -> Iterator[None]:
    assert importlib.util.find_spec("django_tasks_db"), "django-tasks-db is in the test dependency group"
    with override_settings(EMAIL_OTP_DELIVERY="tasks"):
        yield


def on_the_db_worker(test: Any) -> Any:
    """Marks a test that runs the database backend's worker process on PostgreSQL, with "tasks" delivery."""
    for mark in (pytest.mark.usefixtures("tasks_delivery"), pytest.mark.django_db(transaction=True)):
        test = mark(test)
    return pytest.mark.worker(pytest.mark.postgres(test))


def stored_task_arguments() -> list[Any]:
    """The arguments of every task the database backend holds, as stored (its "broker message")."""
    from django_tasks_db.models import DBTaskResult

    return list(DBTaskResult.objects.order_by("enqueued_at").values_list("args_kwargs", flat=True))


def wait_for(challenge: Challenge, event: AuditEventType, worker: TasksWorker) -> None:
    wait_until(
        lambda: AuditEvent.objects.filter(challenge_id=challenge.pk, event=event).exists(),
        f"a {event} audit row",
        details=worker.log,
    )


@on_the_db_worker
def test_the_database_backend_worker_delivers_the_code_and_the_task_carries_only_ids(
    smtp_server: SMTPServer, tmp_path: Path, django_db_setup: None
) -> None:
    smtp = smtp_server.handler
    smtp.reset()
    user = UserFactory(username="alice", email="alice@example.com")

    with running_tasks_worker(tmp_path, {"EMAIL_URL": smtp_server.url}) as worker:
        challenge = issue_challenge(user=user, purpose="step_up")
        wait_for(challenge, SENT, worker)

    [message] = smtp.messages()
    assert message["To"] == "alice@example.com"
    [stored] = stored_task_arguments()
    assert stored == {"args": [str(challenge.pk), 0], "kwargs": {}}
    row = Challenge.objects.get(pk=challenge.pk)
    assert (row.delivery_status, row.delivery_attempts) == (DeliveryStatus.SENT, 1)
    assert trail(challenge) == [(ISSUED, ""), (SENT, "")]
    assert verify_challenge(challenge.pk, code_in(message)).success


@on_the_db_worker
def test_an_smtp_outage_ends_in_failed_after_exactly_the_configured_retries(
    tmp_path: Path, django_db_setup: None
) -> None:
    retries = app_settings.DELIVERY_MAX_RETRIES
    signal_log = tmp_path / "signals.jsonl"
    user = UserFactory(username="alice", email="alice@example.com")
    with socket.socket() as placeholder:  # bound, never listening: the SMTP server is down
        placeholder.bind(("127.0.0.1", 0))
        env = {
            "EMAIL_URL": f"smtp://127.0.0.1:{placeholder.getsockname()[1]}",
            "EMAIL_OTP_TEST_SIGNAL_LOG": str(signal_log),
        }
        with running_tasks_worker(tmp_path, env) as worker:
            challenge = issue_challenge(user=user, purpose="step_up")
            wait_for(challenge, FAILED, worker)

    row = Challenge.objects.get(pk=challenge.pk)
    assert (row.delivery_status, row.delivery_attempts) == (DeliveryStatus.FAILED, retries + 1)
    assert row.delivery_error == "ConnectionRefusedError"
    assert trail(challenge) == [(ISSUED, ""), *[(RETRY, "transient")] * retries, (FAILED, "transient")]
    # One task per try, each with the challenge id and the tries before it; nothing else.
    assert stored_task_arguments() == [{"args": [str(challenge.pk), n], "kwargs": {}} for n in range(retries + 1)]
    finals = [record["final"] for record in recorded(str(signal_log)) if record["challenge"] == str(challenge.pk)]
    assert finals == [False] * retries + [True]


@on_the_db_worker
def test_kill_9_of_the_db_worker_mid_send_then_a_restart_and_one_sweep_deliver_exactly_once(
    smtp_server: SMTPServer, tmp_path: Path, django_db_setup: None
) -> None:
    smtp = smtp_server.handler
    smtp.reset()
    smtp.hold_next_data(60.0)
    env = {"EMAIL_URL": smtp_server.url}
    user = UserFactory(username="alice", email="alice@example.com")

    with running_tasks_worker(tmp_path, env) as doomed:
        challenge = issue_challenge(user=user, purpose="step_up")
        assert smtp.holding.wait(30), doomed.log()
        doomed.kill()
    wait_until(lambda: smtp.lost, "the SMTP server to see the killed client go")
    killed = Challenge.objects.get(pk=challenge.pk)
    assert (killed.delivery_status, killed.delivery_attempts) == (DeliveryStatus.QUEUED, 1)
    assert killed.delivery_deadline is not None

    with running_tasks_worker(tmp_path, env) as restarted:
        # The database backend never runs a task again that a dead worker had claimed: only the sweep recovers it.
        report = sweep_deliveries(killed.delivery_deadline + timedelta(microseconds=1))
        assert report == SweepReport(redispatched=1)
        wait_for(challenge, SENT, restarted)

    [message] = smtp.messages()
    row = Challenge.objects.get(pk=challenge.pk)
    assert (row.delivery_status, row.delivery_attempts) == (DeliveryStatus.SENT, 2)
    assert row.sent_at is not None
    assert row.sent_at < row.expires_at
    assert trail(challenge) == [(ISSUED, ""), (REDISPATCHED, "lease_expired"), (SENT, "")]
    assert verify_challenge(challenge.pk, code_in(message)).success
