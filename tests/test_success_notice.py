"""The "a code worked after wrong attempts" notice (SECURITY.md rule 13): a right code that follows at least
``EMAIL_OTP_NOTIFY_AFTER_FAILURES`` (3) wrong codes in a row emails the user once, after commit, without a secret."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.test import RequestFactory, override_settings

from django_emailotp.models import AuditEvent, AuditEventType, Lockout
from django_emailotp.services import verify_challenge
from tests.test_issue import Capture, Issue, issue_and_read, wrong_code

pytestmark = pytest.mark.django_db

SUBJECT = "Example: a code worked after wrong attempts"
FIREFOX_ON_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


@pytest.fixture
def issue(django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]) -> Issue:
    return partial(issue_and_read, django_capture_on_commit_callbacks, mailoutbox)


def verify(capture: Capture, challenge: Any, code: str) -> Any:
    """Submit ``code`` from Firefox on Linux and run what waits for the commit (the notice)."""
    request = RequestFactory().post("/", REMOTE_ADDR="198.51.100.30", HTTP_USER_AGENT=FIREFOX_ON_LINUX)
    with capture(execute=True):
        return verify_challenge(challenge.pk, code, request=request)


def notices(outbox: list[EmailMessage]) -> list[EmailMultiAlternatives]:
    """The notices among the sent emails (each with an HTML part)."""
    return [m for m in outbox if m.subject == SUBJECT and isinstance(m, EmailMultiAlternatives)]


def notice_events() -> list[tuple[str, str, Any]]:
    return [(e.reason, e.outcome, e.user_id) for e in AuditEvent.objects.filter(event=AuditEventType.NOTICE_SENT)]


def wrong_then_right(capture: Capture, issue: Issue, user: Any, wrong: int) -> str:
    """Guess wrong ``wrong`` times, then enter the right code; return the code."""
    challenge, code = issue(user=user, purpose="step_up")
    for _ in range(wrong):
        assert not verify(capture, challenge, wrong_code(code)).success
    assert Lockout.objects.get(user=user).consecutive_failures == wrong
    assert verify(capture, challenge, code).success
    assert Lockout.objects.get(user=user).consecutive_failures == 0  # the run starts over after a right code
    return code


def test_three_wrong_codes_then_the_right_one_email_one_notice_with_the_count(
    user: Any, issue: Issue, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    code = wrong_then_right(django_capture_on_commit_callbacks, issue, user, 3)

    [notice] = notices(mailoutbox)
    assert notice.to == ["alice@example.com"]
    assert notice.extra_headers == {"Auto-Submitted": "auto-generated"}
    assert (
        "A code we emailed you was just entered correctly from Firefox on Linux, right after 3 wrong codes in a row."
        in notice.body
    )
    assert "If it was not you, someone can read your email" in notice.body
    html = str(notice.alternatives[0][0])
    assert "right after 3 wrong codes in a row." in html
    assert "Firefox on Linux" in html
    for part in (notice.subject, notice.body, html):
        assert code not in part
    assert notice_events() == [("success_after_failures", "info", user.pk)]


def test_two_wrong_codes_then_the_right_one_send_no_notice(
    user: Any, issue: Issue, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    wrong_then_right(django_capture_on_commit_callbacks, issue, user, 2)

    assert [message.subject for message in mailoutbox] == ["Your Example verification code"]  # the code email only
    assert notice_events() == []


def test_the_run_counts_across_codes_and_a_success_starts_it_over(
    user: Any, issue: Issue, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    capture = django_capture_on_commit_callbacks
    first, first_code = issue(user=user, purpose="step_up")
    for _ in range(2):
        verify(capture, first, wrong_code(first_code))
    with override_settings(EMAIL_OTP_RESEND_COOLDOWN=0):
        second, second_code = issue(user=user, purpose="step_up")  # supersedes the first
    verify(capture, second, wrong_code(second_code))
    assert verify(capture, second, second_code).success
    [notice] = notices(mailoutbox)
    assert "right after 3 wrong codes in a row." in notice.body

    # The next right code after 2 wrong ones is not announced: the count started over.
    wrong_then_right(capture, issue, user, 2)
    assert len(notices(mailoutbox)) == 1
    assert notice_events() == [("success_after_failures", "info", user.pk)]


@override_settings(EMAIL_OTP_NOTIFY_AFTER_FAILURES=1)
def test_the_threshold_is_a_setting(
    user: Any, issue: Issue, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    wrong_then_right(django_capture_on_commit_callbacks, issue, user, 1)

    [notice] = notices(mailoutbox)
    assert "from Firefox on Linux, right after 1 wrong code." in notice.body


@override_settings(EMAIL_OTP_NOTIFY_USERS=False)
def test_no_notice_when_notices_are_off(
    user: Any, issue: Issue, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    wrong_then_right(django_capture_on_commit_callbacks, issue, user, 3)

    assert notices(mailoutbox) == []
    assert notice_events() == []


def test_the_notice_waits_for_the_commit(
    user: Any, issue: Issue, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    challenge, code = issue(user=user, purpose="step_up")
    for _ in range(3):
        verify(django_capture_on_commit_callbacks, challenge, wrong_code(code))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert verify_challenge(challenge.pk, code).success
    assert len(callbacks) == 1
    assert (notices(mailoutbox), notice_events()) == ([], [])  # nothing leaves before the transaction commits

    callbacks[0]()
    [notice] = notices(mailoutbox)
    assert "right after 3 wrong codes in a row." in notice.body
    assert "an unknown device" in notice.body  # no request, no user agent
