"""Retries that end (issue 11, finding 1): with the SMTP server down for longer than the whole backoff, a real
Celery worker tries exactly EMAIL_OTP_DELIVERY_MAX_RETRIES + 1 times, then the challenge is ``failed`` with one
``delivery_failed`` audit row, one final signal and the error class on the row. On Redis and on RabbitMQ.

Before the fix the task retried with ``max_retries=None``, which Celery reads as its own default of 3: the fourth
failure raised, and the challenge stayed ``retrying`` with four tries for ever, with no audit row and no signal.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import override_settings

from django_emailotp.conf import app_settings
from django_emailotp.models import AuditEvent, AuditEventType, Challenge, DeliveryStatus
from django_emailotp.services import issue_challenge
from tests.factories import UserFactory
from tests.mailservers import wait_until
from tests.signal_probe import recorded
from tests.worker import WORKER_TESTS, Worker, broker_at, broker_url, running_worker

pytestmark = WORKER_TESTS

ISSUED = AuditEventType.CHALLENGE_ISSUED
RETRY = AuditEventType.DELIVERY_RETRY
FAILED = AuditEventType.DELIVERY_FAILED
# Long enough for a further retry to have happened: the test settings back off 0.025 to 0.2 s.
NO_RETRY_GRACE = 1.0


@pytest.fixture(scope="module")
def down_smtp_worker(
    django_db_setup: None, broker: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Worker, Path]]:
    """A worker whose SMTP server is down: the port is bound (nobody else takes it) but nothing listens on it."""
    log_dir = tmp_path_factory.mktemp("worker")
    signal_log = log_dir / "signals.jsonl"
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        env = {
            "EMAIL_URL": f"smtp://127.0.0.1:{placeholder.getsockname()[1]}",
            "EMAIL_OTP_TEST_SIGNAL_LOG": str(signal_log),
        }
        with running_worker(log_dir, env, broker=broker) as worker:
            yield worker, signal_log


def test_smtp_down_for_longer_than_the_whole_backoff_fails_after_exactly_the_configured_retries(
    down_smtp_worker: tuple[Worker, Path],
) -> None:
    worker, signal_log = down_smtp_worker
    retries = app_settings.DELIVERY_MAX_RETRIES
    assert retries == 5  # the default: six tries in all
    user = UserFactory(username="alice", email="alice@example.com")

    with (
        broker_at(broker_url(worker.broker)),
        override_settings(EMAIL_OTP_DELIVERY="celery", EMAIL_OTP_CELERY_QUEUE=worker.queue),
    ):
        challenge = issue_challenge(user=user, purpose="step_up")

    wait_until(
        lambda: AuditEvent.objects.filter(challenge_id=challenge.pk, event=FAILED).exists(),
        "the delivery_failed audit row",
        details=lambda: f"{Challenge.objects.get(pk=challenge.pk).__dict__}\n{worker.log()}",
    )
    time.sleep(NO_RETRY_GRACE)

    row = Challenge.objects.get(pk=challenge.pk)
    assert row.delivery_status == DeliveryStatus.FAILED
    assert row.delivery_attempts == retries + 1
    assert row.delivery_error == "ConnectionRefusedError"
    assert row.delivery_deadline is None  # finished: nothing for the sweep to take over
    assert row.sent_at is None
    trail = list(AuditEvent.objects.filter(challenge_id=challenge.pk).order_by("id").values_list("event", "reason"))
    assert trail == [(ISSUED, ""), *[(RETRY, "transient")] * retries, (FAILED, "transient")]
    tries = AuditEvent.objects.filter(challenge_id=challenge.pk).exclude(event=ISSUED).order_by("id")
    assert [event.data["attempt"] for event in tries] == list(range(1, retries + 2))
    assert all(event.data["error"].startswith("ConnectionRefusedError:") for event in tries)
    signals = [record for record in recorded(str(signal_log)) if record["challenge"] == str(challenge.pk)]
    failures = [(record["signal"], record["error"], record["final"]) for record in signals]
    expected = ("challenge_delivery_failed", "ConnectionRefusedError")
    assert failures == [(*expected, False)] * retries + [(*expected, True)]
