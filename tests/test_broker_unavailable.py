"""A broker that cannot be reached: issuing neither hangs nor silently drops the email.

The Celery app is pointed at a port on 127.0.0.1 that refuses connections, or that accepts them and never answers;
no Redis is needed, so this runs on the embedded default as well as in the services suite.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from django.core import mail
from django.db import connection
from django.test import override_settings

from django_emailotp.exceptions import DeliveryUnavailable
from django_emailotp.models import AuditEvent, AuditEventType, Challenge, ChallengeStatus, DeliveryStatus
from django_emailotp.services import issue_challenge, verify_challenge
from tests.conftest import code_from
from tests.worker import broker_at

pytestmark = pytest.mark.django_db(transaction=True)

# The default publish retry policy gives up after one retry of at most 0.2 s; connecting to a closed local port
# fails at once. A few seconds leaves room for a loaded machine while still catching a hang.
FAIL_FAST_SECONDS = 5.0
# A silent broker costs the socket timeout of tests/settings.py (2 s) per attempt, two attempts.
STALL_LIMIT_SECONDS = 8.0


@pytest.fixture
def refusing_broker() -> Iterator[str]:
    """A broker address where connections are refused: the port is bound (so nobody else takes it), never listened."""
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        with broker_at(f"redis://127.0.0.1:{placeholder.getsockname()[1]}/0") as url:
            yield url


@pytest.fixture
def silent_broker() -> Iterator[str]:
    """A broker that completes the TCP handshake and then never answers (a stalled server, a half-open link)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)  # the kernel accepts connections; nothing ever reads or replies
        with broker_at(f"redis://127.0.0.1:{listener.getsockname()[1]}/0") as url:
            yield url


def issue_in_thread(user: object, timeout: float) -> Challenge | BaseException:
    """Issue from a thread so that a hang fails the test instead of stalling the suite."""
    outcome: list[Challenge | BaseException] = []

    def run() -> None:
        try:
            outcome.append(issue_challenge(user=user, purpose="step_up"))
        except BaseException as exc:
            outcome.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"issue_challenge() still blocked after {timeout:.0f}s"
    return outcome[0]


def audit_events(challenge: Challenge) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(challenge_id=challenge.pk).order_by("id"))


@override_settings(EMAIL_OTP_DELIVERY="celery")
def test_a_refused_broker_fails_fast_with_delivery_unavailable_and_is_recorded(
    refusing_broker: str, user: object
) -> None:
    started = time.monotonic()
    with pytest.raises(DeliveryUnavailable, match="broker could not be reached"):
        issue_challenge(user=user, purpose="step_up")
    elapsed = time.monotonic() - started

    assert elapsed < FAIL_FAST_SECONDS
    challenge = Challenge.objects.get(user=user)
    assert challenge.status == ChallengeStatus.PENDING
    assert challenge.delivery_status == DeliveryStatus.FAILED
    assert challenge.delivery_attempts == 0
    assert challenge.code_hash == ""  # no code was ever generated, so none can be guessed
    issued, unavailable = audit_events(challenge)
    assert issued.event == AuditEventType.CHALLENGE_ISSUED
    assert (unavailable.event, unavailable.outcome, unavailable.reason) == (
        AuditEventType.DELIVERY_UNAVAILABLE,
        "failure",
        "broker_unreachable",
    )
    assert unavailable.data["fallback"] == "none"
    assert mail.outbox == []


@override_settings(EMAIL_OTP_DELIVERY="celery", EMAIL_OTP_DELIVERY_FALLBACK="sync")
def test_with_the_sync_fallback_the_email_is_sent_in_process(refusing_broker: str, user: object) -> None:
    started = time.monotonic()
    challenge = issue_challenge(user=user, purpose="step_up")
    elapsed = time.monotonic() - started

    assert elapsed < FAIL_FAST_SECONDS
    [message] = mail.outbox
    assert message.to == ["alice@example.com"]
    row = Challenge.objects.get(pk=challenge.pk)
    assert row.delivery_status == DeliveryStatus.SENT
    assert row.delivery_attempts == 1
    assert [(event.event, event.reason) for event in audit_events(challenge)] == [
        (AuditEventType.CHALLENGE_ISSUED, ""),
        (AuditEventType.DELIVERY_UNAVAILABLE, "broker_unreachable"),
        (AuditEventType.CHALLENGE_SENT, ""),
    ]
    assert AuditEvent.objects.get(event=AuditEventType.DELIVERY_UNAVAILABLE).data["fallback"] == "sync"

    assert verify_challenge(challenge.pk, code_from(message)).success


@override_settings(EMAIL_OTP_DELIVERY="celery")
def test_a_silent_broker_does_not_hang_the_request(silent_broker: str, user: object) -> None:
    started = time.monotonic()
    outcome = issue_in_thread(user, timeout=STALL_LIMIT_SECONDS + 10)
    elapsed = time.monotonic() - started

    assert isinstance(outcome, DeliveryUnavailable), repr(outcome)
    assert "Timeout" in str(outcome)
    assert elapsed < STALL_LIMIT_SECONDS
    challenge = Challenge.objects.get(user=user)
    assert challenge.delivery_status == DeliveryStatus.FAILED
    assert AuditEvent.objects.filter(
        challenge_id=challenge.pk, event=AuditEventType.DELIVERY_UNAVAILABLE, reason="broker_unreachable"
    ).exists()
