"""Security notices (the lockout email): sent after commit, through Celery or in-process, never with a secret."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine
from django.core import mail
from django.test import RequestFactory, override_settings

from django_emailotp.models import AuditEvent, AuditEventType, Lockout
from django_emailotp.services import VerifyReason, issue_challenge, verify_challenge
from tests.worker import broker_at

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen")]

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NOTICE_SUBJECT = "Example: sign-in codes paused after wrong attempts"
CHROME_ON_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
)


@pytest.fixture
def frozen() -> Iterator[None]:
    with time_machine.travel(START, tick=False):
        yield


@pytest.fixture(autouse=True)
def lock_on_first_wrong_code(settings: Any) -> None:
    settings.EMAIL_OTP_LOCKOUT_THRESHOLD = 1


def lock(user: Any, capture: Any, *, execute: bool = True) -> list[Any]:
    """Issue a code (sent at once), then guess wrong once, which locks; return the guess's on-commit callbacks."""
    with capture(execute=True):
        challenge = issue_challenge(user=user, purpose="step_up")
    request = RequestFactory().post("/", REMOTE_ADDR="198.51.100.20", HTTP_USER_AGENT=CHROME_ON_MAC)
    with capture(execute=execute) as callbacks:
        result = verify_challenge(challenge.pk, "000000", request=request)
    assert (result.reason, result.retry_after) == (VerifyReason.INVALID_CODE, 900)
    assert Lockout.objects.get(user=user).is_active()
    return callbacks


def notices() -> list[mail.EmailMessage]:
    return [m for m in mail.outbox if m.subject == NOTICE_SUBJECT]


def notice_events() -> list[tuple[str, str, Any]]:
    return [(e.reason, e.outcome, e.user_id) for e in AuditEvent.objects.filter(event=AuditEventType.NOTICE_SENT)]


def test_the_notice_waits_for_the_commit_and_is_audited(user: Any, django_capture_on_commit_callbacks: Any) -> None:
    callbacks = lock(user, django_capture_on_commit_callbacks, execute=False)
    assert len(callbacks) == 1
    assert (notices(), notice_events()) == ([], [])  # nothing leaves before the transaction commits

    callbacks[0]()
    [notice] = notices()
    assert notice.to == ["alice@example.com"]
    assert notice.extra_headers == {"Auto-Submitted": "auto-generated"}
    assert "until 2026-03-02 09:15 UTC" in notice.body
    assert "The last attempt came from Chrome on macOS (198.51.100.20)." in notice.body
    html = str(notice.alternatives[0][0])
    assert "until 2026-03-02 09:15 UTC" in html
    assert "Chrome on macOS" in html
    assert notice_events() == [("locked_out", "info", user.pk)]
    [event] = AuditEvent.objects.filter(event=AuditEventType.NOTICE_SENT)
    assert event.email_pseudonym
    assert "alice" not in event.email_pseudonym


@override_settings(EMAIL_OTP_NOTIFY_USERS=False)
def test_no_notice_when_notices_are_off(user: Any, django_capture_on_commit_callbacks: Any) -> None:
    callbacks = lock(user, django_capture_on_commit_callbacks)
    assert callbacks == []
    assert (notices(), notice_events()) == ([], [])
    assert AuditEvent.objects.filter(event=AuditEventType.LOCKED_OUT).count() == 1  # the lock itself still counts


@pytest.fixture
def dead_broker() -> Iterator[str]:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        with broker_at(f"redis://127.0.0.1:{placeholder.getsockname()[1]}/0") as url:
            yield url


@pytest.mark.usefixtures("dead_broker")
def test_with_celery_and_a_dead_broker_the_notice_is_sent_in_process(
    user: Any, django_capture_on_commit_callbacks: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        challenge = issue_challenge(user=user, purpose="step_up")  # the code goes out in-process (test settings)
    caplog.set_level(logging.WARNING, logger="django_emailotp")
    with override_settings(EMAIL_OTP_DELIVERY="celery"), django_capture_on_commit_callbacks(execute=True):
        result = verify_challenge(challenge.pk, "000000")
    assert result.retry_after == 900
    assert len(notices()) == 1
    assert notice_events() == [("locked_out", "info", user.pk)]
    assert "emailotp: queueing a locked_out notice failed; sending it in-process" in caplog.messages
