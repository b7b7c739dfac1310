"""Recovery from crashes (issue 11, finding 2): the challenge row is the outbox, and the sweep hands a delivery that
nothing finished to the queue again, once, while its code can be used. Real worker processes on Redis and RabbitMQ,
a real SMTP server that holds a send in flight, PostgreSQL rows claimed with conditional UPDATEs.

Before the fix, ``kill -9`` of the worker's main process during a send left the message unacknowledged; Redis
redelivers it only after its visibility timeout (an hour by default), long after the code expired, and nothing else
ever sent the code: the challenge stayed ``queued``.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.test import Client, override_settings
from django.utils import timezone

from django_emailotp import services, texts
from django_emailotp.conf import app_settings
from django_emailotp.models import AuditEvent, AuditEventType, Challenge, DeliveryStatus
from django_emailotp.services import SweepReport, issue_challenge, sweep_deliveries, verify_challenge
from django_emailotp.tasks import send_code_email
from tests.factories import UserFactory
from tests.mailservers import SMTPServer, code_in, running_smtp_server, wait_until
from tests.worker import WORKER_TESTS, Worker, broker_at, broker_url, forget_queues, new_queue_name, running_worker

pytestmark = WORKER_TESTS

ISSUED = AuditEventType.CHALLENGE_ISSUED
SENT = AuditEventType.CHALLENGE_SENT
REDISPATCHED = AuditEventType.DELIVERY_REDISPATCHED
# The SMTP server keeps the DATA of the send that is killed unanswered for this long (far past the kill).
HOLD_SECONDS = 60.0
TASK_ID = re.compile(r"Task emailotp\.send_code\[([0-9a-f-]{36})\] received")


@pytest.fixture(scope="module")
def smtp_server() -> Iterator[SMTPServer]:
    with running_smtp_server() as server:
        yield server


@pytest.fixture
def queue(broker: str) -> Iterator[str]:
    """A queue of this test's own, deleted afterwards; the test starts (and kills) the workers that consume it."""
    name = new_queue_name()
    try:
        with (
            broker_at(broker_url(broker)),
            override_settings(EMAIL_OTP_DELIVERY="celery", EMAIL_OTP_CELERY_QUEUE=name),
        ):
            yield name
    finally:
        forget_queues(name, broker)


def trail(challenge: Challenge) -> list[tuple[str, str]]:
    return list(AuditEvent.objects.filter(challenge_id=challenge.pk).order_by("id").values_list("event", "reason"))


def wait_for_sent(challenge: Challenge, worker: Worker) -> None:
    wait_until(
        lambda: AuditEvent.objects.filter(challenge_id=challenge.pk, event=SENT).exists(),
        "the challenge_sent audit row",
        details=worker.log,
    )


def test_kill_9_of_the_worker_mid_send_then_a_restart_and_one_sweep_deliver_the_email_exactly_once(
    broker: str, queue: str, smtp_server: SMTPServer, tmp_path: Path, django_db_setup: None
) -> None:
    smtp = smtp_server.handler
    smtp.reset()
    smtp.hold_next_data(HOLD_SECONDS)  # a slow server: the first send stays in flight until the kill
    env = {"EMAIL_URL": smtp_server.url}
    user = UserFactory(username="alice", email="alice@example.com")

    with running_worker(tmp_path, env, broker=broker, queue=queue) as doomed:
        challenge = issue_challenge(user=user, purpose="step_up")
        assert smtp.holding.wait(30), doomed.log()
        [lost_task] = TASK_ID.findall(doomed.full_log())
        doomed.kill()
    wait_until(lambda: smtp.lost, "the SMTP server to see the killed client go")
    killed = Challenge.objects.get(pk=challenge.pk)
    assert (killed.delivery_status, killed.delivery_attempts) == (DeliveryStatus.QUEUED, 1)
    assert killed.delivery_deadline is not None
    assert smtp.messages() == []

    with running_worker(tmp_path, env, broker=broker, queue=queue) as restarted:
        # Nothing else recovers it: on Redis the killed worker's message waits out the visibility timeout; on
        # RabbitMQ it comes straight back, and the restarted worker finds try 1 already taken and sends nothing.
        if broker == "rabbitmq":
            wait_until(
                lambda: f"Task emailotp.send_code[{lost_task}] succeeded" in restarted.full_log(),
                "the redelivered message to be run",
                details=restarted.log,
            )
            assert f"emailotp.send_code[{lost_task}] succeeded in" in restarted.full_log()
            assert "'skipped'" in restarted.full_log()
        assert sweep_deliveries(killed.delivery_deadline - timedelta(seconds=1)) == SweepReport()

        report = sweep_deliveries(killed.delivery_deadline + timedelta(microseconds=1))

        assert report == SweepReport(redispatched=1)
        wait_for_sent(challenge, restarted)
        # A late worker that still holds the lost message (Redis hands it out after the visibility timeout):
        # its try was taken, so it sends nothing. Published here with the lost message's own arguments.
        late = send_code_email.apply_async((str(challenge.pk), 0), queue=queue)
        wait_until(
            lambda: f"emailotp.send_code[{late.id}] succeeded" in restarted.full_log(),
            "the late message to be run",
            details=restarted.log,
        )
        assert sweep_deliveries(timezone.now() + timedelta(seconds=app_settings.CODE_TTL - 1)) == SweepReport()

    [message] = smtp.messages()
    [lost] = smtp.lost
    assert message["To"] == "alice@example.com"
    row = Challenge.objects.get(pk=challenge.pk)
    assert row.delivery_status == DeliveryStatus.SENT
    assert row.delivery_attempts == 2
    assert row.sent_at is not None
    assert row.sent_at < row.expires_at  # inside the code's lifetime
    assert trail(challenge) == [(ISSUED, ""), (REDISPATCHED, "lease_expired"), (SENT, "")]
    redispatched = AuditEvent.objects.get(challenge_id=challenge.pk, event=REDISPATCHED)
    assert redispatched.data == {"attempts": 1}
    stale = verify_challenge(challenge.pk, code_in(lost))  # the code of the send that never arrived
    assert (stale.success, stale.reason) == (False, services.VerifyReason.INVALID_CODE)
    assert verify_challenge(challenge.pk, code_in(message)).success


def test_two_sweeps_at_once_over_the_same_stuck_rows_send_each_email_once(
    broker: str, queue: str, smtp_server: SMTPServer, tmp_path: Path, django_db_setup: None
) -> None:
    smtp = smtp_server.handler
    smtp.reset()
    users = [UserFactory(username=f"user{n}", email=f"user{n}@example.com") for n in range(12)]
    lost_queue = f"{queue}-lost"
    try:
        with override_settings(EMAIL_OTP_CELERY_QUEUE=lost_queue):  # published where no worker ever looks
            challenges = [issue_challenge(user=user, purpose="step_up") for user in users]
    finally:
        forget_queues(lost_queue, broker)
    due = max(Challenge.objects.values_list("delivery_deadline", flat=True)) + timedelta(microseconds=1)
    barrier = threading.Barrier(2)
    reports: list[SweepReport] = []

    def sweep() -> None:
        try:
            barrier.wait(timeout=10)
            reports.append(sweep_deliveries(due))
        finally:
            connection.close()

    with running_worker(tmp_path, {"EMAIL_URL": smtp_server.url}, broker=broker, queue=queue) as worker:
        threads = [threading.Thread(target=sweep) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        for challenge in challenges:
            wait_for_sent(challenge, worker)

    assert len(reports) == 2
    # Between them the two sweeps queued every row once: each row is claimed by exactly one of them.
    assert sum(report.redispatched for report in reports) == len(users)
    assert sum(report.total for report in reports) == len(users)
    assert sorted(message["To"] for message in smtp.messages()) == sorted(user.email for user in users)
    for challenge in challenges:
        assert trail(challenge) == [(ISSUED, ""), (REDISPATCHED, "lease_expired"), (SENT, "")]
        row = Challenge.objects.get(pk=challenge.pk)
        assert (row.delivery_status, row.delivery_attempts) == (DeliveryStatus.SENT, 1)


def test_a_broker_down_at_issue_time_answers_503_and_nothing_is_sent_later_by_surprise(
    broker: str, queue: str, smtp_server: SMTPServer, tmp_path: Path, django_db_setup: None
) -> None:
    smtp = smtp_server.handler
    smtp.reset()
    user = UserFactory(username="alice", email="alice@example.com")
    client = Client()
    client.force_login(user)
    with socket.socket() as placeholder:  # a broker address that refuses connections
        placeholder.bind(("127.0.0.1", 0))
        dead = "redis" if broker == "redis" else "amqp"
        with broker_at(f"{dead}://127.0.0.1:{placeholder.getsockname()[1]}//"):
            api = client.post("/api/otp/challenges/", {"purpose": "step_up"}, content_type="application/json")
            page = client.post("/otp/send/", {"purpose": "step_up"}, follow=True)

    assert (api.status_code, api["Retry-After"], api.json()["error"]) == (503, "60", "delivery_unavailable")
    assert page.status_code == 200
    assert str(texts.DELIVERY_DOWN) in page.content.decode()
    failed = list(Challenge.objects.filter(user=user).order_by("created_at"))
    assert [row.delivery_status for row in failed] == [DeliveryStatus.FAILED, DeliveryStatus.FAILED]
    assert [row.delivery_deadline for row in failed] == [None, None]

    # The broker is back, a worker runs, the sweep runs long after the lease: the user was told no code went
    # out, so none goes out now.
    with running_worker(tmp_path, {"EMAIL_URL": smtp_server.url}, broker=broker, queue=queue) as worker:
        assert sweep_deliveries(timezone.now() + timedelta(seconds=app_settings.CODE_TTL - 1)) == SweepReport()
        probe = issue_challenge(user=UserFactory(username="bob", email="bob@example.com"), purpose="step_up")
        wait_for_sent(probe, worker)  # one worker, one queue, in order: anything queued before would have gone first

    assert [message["To"] for message in smtp.messages()] == ["bob@example.com"]
    assert [row.delivery_status for row in Challenge.objects.filter(user=user)] == [DeliveryStatus.FAILED] * 2
