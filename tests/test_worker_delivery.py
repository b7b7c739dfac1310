"""The real delivery pipeline: services queue a challenge id on Redis or RabbitMQ, a Celery worker process builds
and sends the email through SMTP (an aiosmtpd server) or Postmark's HTTP API (a local stand-in speaking Postmark's
format), and the row and the audit trail record what happened. Every test runs on both brokers."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from django.test import override_settings

from django_emailotp.models import AuditEvent, AuditEventType, Challenge, ChallengeStatus, DeliveryStatus
from django_emailotp.services import VerifyReason, issue_challenge, verify_challenge
from example_project.celery import app as celery_app
from tests.conftest import CODE_LINE
from tests.factories import UserFactory
from tests.mailservers import (
    POSTMARK_TOKEN,
    FakePostmark,
    RecordingHandler,
    SMTPServer,
    code_in,
    running_fake_postmark,
    running_smtp_server,
    wait_until,
)
from tests.worker import WORKER_TESTS, Worker, broker_at, broker_url, forget_queues, raw_messages, running_worker

pytestmark = WORKER_TESTS

ISSUED = AuditEventType.CHALLENGE_ISSUED
SENT = AuditEventType.CHALLENGE_SENT
RETRY = AuditEventType.DELIVERY_RETRY
FAILED = AuditEventType.DELIVERY_FAILED
# Long enough for a retry to have happened: the test settings back off 0.025 to 0.2 s.
NO_RETRY_GRACE = 1.0


@pytest.fixture(scope="module")
def smtp_server() -> Iterator[SMTPServer]:
    with running_smtp_server() as server:
        yield server


@pytest.fixture(scope="module")
def fake_postmark() -> Iterator[FakePostmark]:
    with running_fake_postmark() as fake:
        yield fake


@pytest.fixture(scope="module")
def smtp_worker(
    django_db_setup: None, broker: str, smtp_server: SMTPServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    env = {"EMAIL_URL": smtp_server.url}
    with running_worker(tmp_path_factory.mktemp("worker"), env, broker=broker) as worker:
        yield worker


@pytest.fixture(scope="module")
def postmark_worker(
    django_db_setup: None, broker: str, fake_postmark: FakePostmark, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    env = {
        "ANYMAIL_ESP": "postmark",
        "ANYMAIL_POSTMARK_SERVER_TOKEN": POSTMARK_TOKEN,
        "ANYMAIL_POSTMARK_API_URL": fake_postmark.api_url,
    }
    with running_worker(tmp_path_factory.mktemp("worker"), env, broker=broker) as worker:
        yield worker


@pytest.fixture
def smtp(smtp_worker: Worker, smtp_server: SMTPServer) -> Iterator[RecordingHandler]:
    """The SMTP server's handler, emptied, with issuing switched to the worker's queue."""
    smtp_server.handler.reset()
    with (
        broker_at(broker_url(smtp_worker.broker)),
        override_settings(EMAIL_OTP_DELIVERY="celery", EMAIL_OTP_CELERY_QUEUE=smtp_worker.queue),
    ):
        yield smtp_server.handler


@pytest.fixture
def postmark(postmark_worker: Worker, fake_postmark: FakePostmark) -> Iterator[FakePostmark]:
    fake_postmark.reset()
    with (
        broker_at(broker_url(postmark_worker.broker)),
        override_settings(EMAIL_OTP_DELIVERY="celery", EMAIL_OTP_CELERY_QUEUE=postmark_worker.queue),
    ):
        yield fake_postmark


def audit_trail(challenge: Challenge) -> list[tuple[str, str]]:
    events = AuditEvent.objects.filter(challenge_id=challenge.pk).order_by("id")
    return list(events.values_list("event", "reason"))


def wait_for_event(challenge: Challenge, event: AuditEventType, worker: Worker) -> AuditEvent:
    """The worker writes the delivery's audit row last, after the send and the row's status."""
    found: AuditEvent = wait_until(
        lambda: AuditEvent.objects.filter(challenge_id=challenge.pk, event=event).first(),
        f"a {event} audit row",
        details=worker.log,
    )
    return found


def code_in_text(text: str) -> str:
    match = CODE_LINE.search(text)
    assert match, "no code in the text body"
    return match.group(1)


# ---------------------------------------------------------------------------------------------------------------
# SMTP


def test_issue_queues_the_challenge_id_and_the_worker_sends_one_email_whose_code_verifies(
    smtp: RecordingHandler, smtp_worker: Worker
) -> None:
    user = UserFactory(username="alice", email="alice@example.com")

    challenge = issue_challenge(user=user, purpose="step_up")

    wait_for_event(challenge, SENT, smtp_worker)
    [message] = smtp.messages()
    assert message["To"] == "alice@example.com"
    assert message["X-Envelope-To"] == "alice@example.com"
    assert message["From"] == "Example <no-reply@example.com>"
    assert message["Auto-Submitted"] == "auto-generated"
    code = code_in(message)
    assert code not in message["Subject"]
    assert message.get_body(preferencelist=("html",)) is not None
    row = Challenge.objects.get(pk=challenge.pk)
    assert row.delivery_status == DeliveryStatus.SENT
    assert row.delivery_attempts == 1
    assert row.sent_at is not None
    assert row.esp_message_id == ""
    assert audit_trail(challenge) == [(ISSUED, ""), (SENT, "")]

    result = verify_challenge(challenge.pk, code)

    assert result.success
    assert Challenge.objects.get(pk=challenge.pk).status == ChallengeStatus.VERIFIED


def test_the_broker_message_carries_only_the_challenge_id(smtp: RecordingHandler, smtp_worker: Worker) -> None:
    held = f"{smtp_worker.queue}-held"  # a queue no worker consumes yet, so the raw message can be read
    user = UserFactory(username="alice", email="alice@example.com")
    try:
        with override_settings(EMAIL_OTP_CELERY_QUEUE=held):
            challenge = issue_challenge(user=user, purpose="step_up")

        [message] = raw_messages(smtp_worker.broker, held)
        assert message.task == "emailotp.send_code"
        # The challenge id and the number of tries so far (the worker claims try 1 on the row), nothing else.
        assert message.arguments == ([str(challenge.pk), 0], {})
        assert message.headers["argsrepr"] == repr((str(challenge.pk), 0))
        assert b"alice" not in message.raw
        # The code does not exist yet: the worker generates it, stores its hash and sends it.
        row = Challenge.objects.get(pk=challenge.pk)
        assert row.code_hash == ""
        assert row.delivery_status == DeliveryStatus.QUEUED
        assert smtp.messages() == []

        [reply] = celery_app.control.add_consumer(held, destination=[smtp_worker.hostname], reply=True, timeout=5)
        assert "ok" in reply[smtp_worker.hostname]
        wait_for_event(challenge, SENT, smtp_worker)
    finally:
        celery_app.control.cancel_consumer(held, destination=[smtp_worker.hostname], reply=True, timeout=5)
        forget_queues(held, smtp_worker.broker)

    [message] = smtp.messages()
    assert message["To"] == "alice@example.com"
    assert verify_challenge(challenge.pk, code_in(message)).success


def test_a_transient_smtp_failure_is_retried_and_only_the_code_received_is_valid(
    smtp: RecordingHandler, smtp_worker: Worker
) -> None:
    smtp.fail_next_data("451 4.3.0 Temporary local problem, try again later")
    user = UserFactory(username="alice", email="alice@example.com")

    challenge = issue_challenge(user=user, purpose="step_up")

    wait_for_event(challenge, SENT, smtp_worker)
    [refused] = smtp.refused_data
    [message] = smtp.messages()
    row = Challenge.objects.get(pk=challenge.pk)
    assert row.delivery_status == DeliveryStatus.SENT
    assert row.delivery_attempts == 2
    assert audit_trail(challenge) == [(ISSUED, ""), (RETRY, "transient"), (SENT, "")]
    retry = AuditEvent.objects.get(challenge_id=challenge.pk, event=RETRY)
    assert retry.data["error"].startswith("SMTPDataError: (451,")
    first_code, sent_code = code_in(refused), code_in(message)
    assert first_code != sent_code  # a retry generates a new code and replaces the stored hash

    stale = verify_challenge(challenge.pk, first_code)
    assert (stale.success, stale.reason, stale.attempts_remaining) == (False, VerifyReason.INVALID_CODE, 4)
    assert verify_challenge(challenge.pk, sent_code).success


def test_a_permanent_smtp_refusal_is_not_retried(smtp: RecordingHandler, smtp_worker: Worker) -> None:
    smtp.reject_recipient("nobody@example.com", "550 5.1.1 <nobody@example.com>: Recipient address rejected")
    user = UserFactory(username="nobody", email="nobody@example.com")

    challenge = issue_challenge(user=user, purpose="step_up")

    failed = wait_for_event(challenge, FAILED, smtp_worker)
    time.sleep(NO_RETRY_GRACE)
    assert failed.reason == "permanent"
    assert failed.data["error"].startswith("SMTPRecipientsRefused:")
    row = Challenge.objects.get(pk=challenge.pk)
    assert row.delivery_status == DeliveryStatus.FAILED
    assert row.delivery_attempts == 1
    assert row.sent_at is None
    assert smtp.refused_recipients == ["nobody@example.com"]
    assert smtp.messages() == []
    assert smtp.refused_data == []
    assert audit_trail(challenge) == [(ISSUED, ""), (FAILED, "permanent")]


# ---------------------------------------------------------------------------------------------------------------
# Postmark over HTTP


def test_postmark_send_records_the_esp_message_id_and_carries_tags_and_metadata(
    postmark: FakePostmark, postmark_worker: Worker
) -> None:
    user = UserFactory(username="alice", email="alice@example.com")

    challenge = issue_challenge(user=user, purpose="step_up")

    sent = wait_for_event(challenge, SENT, postmark_worker)
    [request] = postmark.recorded()
    [message_id] = postmark.message_ids
    payload = request.payload
    assert request.headers["x-postmark-server-token"] == POSTMARK_TOKEN
    assert payload["To"] == "alice@example.com"
    assert payload["From"] == "Example <no-reply@example.com>"
    assert payload["Tag"] == "emailotp"
    assert payload["Metadata"] == {"emailotp_challenge": str(challenge.pk), "emailotp_purpose": "step_up"}
    code = code_in_text(payload["TextBody"])
    assert code not in payload["Subject"]
    assert code in payload["HtmlBody"]
    row = Challenge.objects.get(pk=challenge.pk)
    assert row.esp_message_id == message_id
    assert row.delivery_status == DeliveryStatus.SENT
    assert row.delivery_attempts == 1
    assert sent.data == {"esp_message_id": message_id}
    assert verify_challenge(challenge.pk, code).success


def test_postmark_server_error_is_retried(postmark: FakePostmark, postmark_worker: Worker) -> None:
    postmark.answer_next(500, "Internal Server Error")
    user = UserFactory(username="alice", email="alice@example.com")

    challenge = issue_challenge(user=user, purpose="step_up")

    wait_for_event(challenge, SENT, postmark_worker)
    first, second = postmark.recorded()
    [message_id] = postmark.message_ids
    row = Challenge.objects.get(pk=challenge.pk)
    assert row.delivery_status == DeliveryStatus.SENT
    assert row.delivery_attempts == 2
    assert row.esp_message_id == message_id
    assert audit_trail(challenge) == [(ISSUED, ""), (RETRY, "transient"), (SENT, "")]
    first_code, sent_code = code_in_text(first.payload["TextBody"]), code_in_text(second.payload["TextBody"])
    assert first_code != sent_code
    assert verify_challenge(challenge.pk, first_code).reason == VerifyReason.INVALID_CODE
    assert verify_challenge(challenge.pk, sent_code).success


def test_postmark_invalid_recipient_is_not_retried(postmark: FakePostmark, postmark_worker: Worker) -> None:
    # Postmark's answer to an address it will not accept: HTTP 422, ErrorCode 300 "Invalid email request".
    postmark.answer_next(422, {"ErrorCode": 300, "Message": "Invalid 'To' address: 'carol@example.invalid'."})
    user = UserFactory(username="carol", email="carol@example.invalid")

    challenge = issue_challenge(user=user, purpose="step_up")

    failed = wait_for_event(challenge, FAILED, postmark_worker)
    time.sleep(NO_RETRY_GRACE)
    assert failed.reason == "permanent"
    assert failed.data["error"].startswith("AnymailRecipientsRefused:")
    assert len(postmark.recorded()) == 1
    row = Challenge.objects.get(pk=challenge.pk)
    assert row.delivery_status == DeliveryStatus.FAILED
    assert row.delivery_attempts == 1
    assert row.esp_message_id == ""
    assert audit_trail(challenge) == [(ISSUED, ""), (FAILED, "permanent")]
