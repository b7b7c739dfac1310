"""Issuing codes: the row written, delivery after commit, one live challenge per key, supersede and cooldown.

The helpers at the top are shared by the other engine test modules (issue with in-process delivery and read the code
from the email; requests that carry a real database-backed session).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
import time_machine
from django.conf import settings
from django.contrib.sessions.middleware import SessionMiddleware
from django.core.mail import EmailMessage
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory, override_settings

from django_emailotp.crypto import code_hash
from django_emailotp.exceptions import NoEmailAddress, ResendCooldown, UnknownPurpose
from django_emailotp.models import AuditEvent, Challenge, ChallengeStatus, DeliveryStatus
from django_emailotp.services import issue_challenge, resend_challenge, verify_challenge
from tests.conftest import code_from

Capture = Callable[..., AbstractContextManager[Any]]
Issue = Callable[..., tuple[Challenge, str]]
T0 = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)


def issue_and_read(capture: Capture, outbox: list[EmailMessage], **kwargs: Any) -> tuple[Challenge, str]:
    """Issue a challenge, let the after-commit delivery run, and return the fresh row and the code from the email."""
    sent = len(outbox)
    with capture(execute=True):
        challenge = issue_challenge(**kwargs)
    assert len(outbox) == sent + 1
    challenge.refresh_from_db()
    return challenge, code_from(outbox[-1])


def wrong_code(code: str) -> str:
    """A well-formed code of the same length that is not ``code``."""
    return f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"


def session_request(
    session_key: str | None = None, *, ip: str = "203.0.113.7", agent: str = "pytest-agent/1.0", **extra: str
) -> HttpRequest:
    """A POST that went through SessionMiddleware: a new session, or the stored one whose key is given."""
    request = RequestFactory().post("/otp/", REMOTE_ADDR=ip, HTTP_USER_AGENT=agent, **extra)
    if session_key is not None:
        request.COOKIES[settings.SESSION_COOKIE_NAME] = session_key
    SessionMiddleware(lambda _request: HttpResponse()).process_request(request)
    return request


def end_request(request: HttpRequest) -> str:
    """Finish the request as SessionMiddleware does (saving a modified session) and return the session key."""
    SessionMiddleware(lambda _request: HttpResponse()).process_response(request, HttpResponse())
    key = request.session.session_key
    assert key
    return key


@pytest.fixture
def issue(db: None, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]) -> Issue:
    return partial(issue_and_read, django_capture_on_commit_callbacks, mailoutbox)


def test_issue_writes_a_pending_row_and_sends_after_commit(
    user: Any, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    with time_machine.travel(T0, tick=False), django_capture_on_commit_callbacks() as callbacks:
        challenge = issue_challenge(user=user, purpose="login", action="sign in from Firefox", context={"k": 1})
        # Before the transaction commits there is neither a code nor an email.
        assert Challenge.objects.get(pk=challenge.pk).code_hash == ""
        assert mailoutbox == []
    # The challenge_issued signal, then the delivery.
    assert len(callbacks) == 2
    with time_machine.travel(T0 + timedelta(seconds=1), tick=False):
        for callback in callbacks:
            callback()

    row = Challenge.objects.get(pk=challenge.pk)
    code = code_from(mailoutbox[0])
    assert (row.user, row.email, row.purpose, row.action, row.context) == (
        user,
        "alice@example.com",
        "login",
        "sign in from Firefox",
        {"k": 1},
    )
    assert row.status == ChallengeStatus.PENDING
    assert (row.created_at, row.expires_at) == (T0, T0 + timedelta(seconds=300))
    assert (row.attempts, row.max_attempts, row.consumed_at, row.binding) == (0, 5, None, "")
    assert row.code_hash == code_hash(row.pk, code)
    assert (row.delivery_status, row.delivery_attempts, row.sent_at) == (
        DeliveryStatus.SENT,
        1,
        T0 + timedelta(seconds=1),
    )
    assert mailoutbox[0].to == ["alice@example.com"]
    assert list(AuditEvent.objects.order_by("id").values_list("event", flat=True)) == [
        "challenge_issued",
        "challenge_sent",
    ]


def test_issue_to_an_address_without_an_account(issue: Issue, mailoutbox: list[EmailMessage]) -> None:
    challenge, code = issue(email="new@example.com", purpose="sign_in")
    assert (challenge.user, challenge.email) == (None, "new@example.com")
    assert mailoutbox[0].to == ["new@example.com"]
    assert verify_challenge(challenge.pk, code, purpose="sign_in").success


def test_explicit_email_wins_over_the_users_address(user: Any, issue: Issue) -> None:
    challenge, _code = issue(user=user, email="alice.new@example.com", purpose="verify_email")
    assert (challenge.user, challenge.email) == (user, "alice.new@example.com")


def test_unknown_purpose_and_missing_address_write_nothing(user: Any, mailoutbox: list[EmailMessage]) -> None:
    with pytest.raises(UnknownPurpose):
        issue_challenge(user=user, purpose="payout")
    user.email = ""
    with pytest.raises(NoEmailAddress):
        issue_challenge(user=user, purpose="login")
    with pytest.raises(NoEmailAddress):
        issue_challenge(purpose="login")
    assert Challenge.objects.count() == 0
    assert AuditEvent.objects.count() == 0
    assert mailoutbox == []


@override_settings(EMAIL_OTP_PURPOSES={"payout": "confirm a payout"})
def test_a_registered_purpose_can_be_issued(user: Any, issue: Issue) -> None:
    challenge, code = issue(user=user, purpose="payout")
    assert verify_challenge(challenge.pk, code, purpose="payout").success


def test_resend_after_the_cooldown_supersedes_the_live_code(
    user: Any, issue: Issue, mailoutbox: list[EmailMessage]
) -> None:
    with time_machine.travel(T0, tick=False) as clock:
        first, first_code = issue(user=user, purpose="login")
        clock.move_to(T0 + timedelta(seconds=60))  # exactly the cooldown: allowed
        second, second_code = issue(user=user, purpose="login")

        first.refresh_from_db()
        assert (first.status, first.code_hash) == (ChallengeStatus.SUPERSEDED, "")
        assert second.status == ChallengeStatus.PENDING
        issued = AuditEvent.objects.get(event="challenge_issued", challenge_id=second.pk)
        assert issued.data == {"superseded": str(first.pk)}

        old = verify_challenge(first.pk, first_code)
        assert (old.success, old.reason, old.attempts_remaining) == (False, "superseded", 0)
        new = verify_challenge(second.pk, second_code)
        assert (new.success, new.reason) == (True, None)
    assert len(mailoutbox) == 2


@pytest.mark.parametrize(
    ("elapsed", "retry_after"),
    [(0, 60), (timedelta(seconds=20.5), 40), (timedelta(seconds=20), 40), (timedelta(seconds=59.999), 1)],
)
def test_issue_within_the_cooldown_is_refused_with_the_exact_wait(
    user: Any, issue: Issue, mailoutbox: list[EmailMessage], elapsed: Any, retry_after: int
) -> None:
    with time_machine.travel(T0, tick=False) as clock:
        first, first_code = issue(user=user, purpose="login")
        clock.move_to(T0 + (elapsed or timedelta(0)))
        with pytest.raises(ResendCooldown) as refused:
            issue_challenge(user=user, purpose="login")
    assert refused.value.retry_after == retry_after
    assert str(refused.value) == f"A new code can be sent in {retry_after} seconds."
    assert list(Challenge.objects.values_list("pk", flat=True)) == [first.pk]
    first.refresh_from_db()
    assert first.status == ChallengeStatus.PENDING
    assert first.code_hash == code_hash(first.pk, first_code)
    throttled = AuditEvent.objects.get(event="resend_throttled")
    assert (throttled.outcome, throttled.challenge_id, throttled.user, throttled.purpose, throttled.data) == (
        "failure",
        first.pk,
        user,
        "login",
        {"retry_after": retry_after},
    )
    assert len(mailoutbox) == 1


def test_issuing_after_expiry_marks_the_old_challenge_expired(user: Any, issue: Issue) -> None:
    with time_machine.travel(T0, tick=False) as clock:
        first, first_code = issue(user=user, purpose="login")
        clock.move_to(T0 + timedelta(seconds=300))
        second, _code = issue(user=user, purpose="login")
        first.refresh_from_db()
        assert (first.status, first.code_hash) == (ChallengeStatus.EXPIRED, "")
        assert verify_challenge(first.pk, first_code).reason == "expired"
    assert second.status == ChallengeStatus.PENDING


def test_resend_challenge_issues_the_same_challenge_again(
    user: Any,
    issue: Issue,
    django_capture_on_commit_callbacks: Capture,
    mailoutbox: list[EmailMessage],
) -> None:
    request = session_request()
    with time_machine.travel(T0, tick=False) as clock:
        first, first_code = issue(
            user=user, purpose="step_up", request=request, action="Send 500 EUR to ACME", context={"amount": 500}
        )
        session_key = end_request(request)
        with pytest.raises(ResendCooldown):
            resend_challenge(first.pk, request=session_request(session_key))

        clock.move_to(T0 + timedelta(seconds=61))
        again = session_request(session_key)
        with django_capture_on_commit_callbacks(execute=True):
            second = resend_challenge(str(first.pk), request=again)
        second_code = code_from(mailoutbox[-1])
        first.refresh_from_db()
        assert first.status == ChallengeStatus.SUPERSEDED
        assert (second.user, second.email, second.purpose, second.action, second.context, second.binding) == (
            user,
            "alice@example.com",
            "step_up",
            "Send 500 EUR to ACME",
            {"amount": 500},
            first.binding,
        )
        assert verify_challenge(first.pk, first_code, request=again).reason == "superseded"
        assert verify_challenge(second.pk, second_code, request=again).success
    assert len(mailoutbox) == 2


def test_resend_challenge_refuses_other_sessions_and_unknown_ids(user: Any, issue: Issue) -> None:
    request = session_request()
    with time_machine.travel(T0, tick=False) as clock:
        first, _code = issue(user=user, purpose="step_up", request=request)
        end_request(request)
        clock.move_to(T0 + timedelta(seconds=61))
        with pytest.raises(Challenge.DoesNotExist):
            resend_challenge(first.pk, request=session_request())
        with pytest.raises(Challenge.DoesNotExist):
            resend_challenge(first.pk)
        with pytest.raises(Challenge.DoesNotExist):
            resend_challenge(uuid.uuid4())
        with pytest.raises(Challenge.DoesNotExist):
            resend_challenge("not-a-uuid")
    assert list(Challenge.objects.values_list("pk", flat=True)) == [first.pk]


def test_one_live_challenge_per_user_purpose_and_binding(user: Any, other_user: Any, issue: Issue) -> None:
    session_a, session_b = session_request(), session_request()
    with time_machine.travel(T0, tick=False):
        login, _ = issue(user=user, purpose="login")
        step_up, _ = issue(user=user, purpose="step_up")
        in_a, _ = issue(user=user, purpose="verify_email", request=session_a)
        in_b, _ = issue(user=user, purpose="verify_email", request=session_b)
        bobs, _ = issue(user=other_user, purpose="login")
        by_address, _ = issue(email="carol@example.com", purpose="login")
        with pytest.raises(ResendCooldown):
            issue_challenge(user=user, purpose="verify_email", request=session_request(end_request(session_a)))
        with pytest.raises(ResendCooldown):
            issue_challenge(email="carol@example.com", purpose="login")
    assert in_a.binding != in_b.binding
    assert set(Challenge.objects.filter(status=ChallengeStatus.PENDING).values_list("pk", flat=True)) == {
        login.pk,
        step_up.pk,
        in_a.pk,
        in_b.pk,
        bobs.pk,
        by_address.pk,
    }
