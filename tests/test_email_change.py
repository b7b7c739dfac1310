"""Email address verification and change (HTML, with the outbox), and codes bound to one action.

Codes go out on a background thread, so these tests commit for real and join it before reading the outbox.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.mail import EmailMessage
from django.test import Client

from django_emailotp import services, signals
from django_emailotp.models import AuditEvent, AuditEventType, Challenge, ChallengeStatus, VerifiedEmail
from tests.conftest import code_from
from tests.test_issue import wrong_code

pytestmark = pytest.mark.django_db(transaction=True)

CHANGE = "/otp/email/change/"
VERIFY = "/otp/email/verify/"
SEND = "/otp/email/send/"


@pytest.fixture
def received() -> Iterator[list[dict[str, Any]]]:
    calls: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        calls.append({"sender": sender, **kwargs})

    signals.email_verified.connect(receiver)
    yield calls
    signals.email_verified.disconnect(receiver)


def settle() -> None:
    services.wait_for_background_sends()


def stepped_up(client: Client, mailoutbox: list[EmailMessage]) -> None:
    """Confirm a step-up code through the step-up pages, as the user would before a sensitive change."""
    client.post("/otp/send/", {"purpose": "step_up"})
    settle()
    done = client.post("/otp/verify/", {"purpose": "step_up", "code": code_from(mailoutbox[-1])})
    assert done.status_code == 302


def ask_for(client: Client, address: str) -> Any:
    response = client.post(CHANGE, {"email": address})
    settle()
    return response


def test_changing_the_address_needs_a_fresh_step_up(user: Any, mailoutbox: list[EmailMessage]) -> None:
    client = Client()
    client.force_login(user)
    page = client.get(CHANGE)
    assert page.status_code == 302
    assert page["Location"].startswith("/otp/verify/?")
    attempt = client.post(CHANGE, {"email": "new@example.com"})
    assert attempt.status_code == 302
    assert attempt["Location"].startswith("/otp/verify/?")
    assert Challenge.objects.filter(purpose="verify_email").count() == 0
    assert mailoutbox == []


def test_change_verifies_the_new_address_and_tells_the_old_one(
    user: Any, mailoutbox: list[EmailMessage], received: list[dict[str, Any]]
) -> None:
    client = Client(HTTP_USER_AGENT="Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0")
    client.force_login(user)
    stepped_up(client, mailoutbox)
    form = client.get(CHANGE)
    assert form.status_code == 200
    assert "a***@example.com" in form.content.decode()

    sent = ask_for(client, "new@example.com")
    assert (sent.status_code, sent["Location"]) == (302, VERIFY)
    message = mailoutbox[-1]
    assert message.to == ["new@example.com"]
    assert "It confirms only this action: new@example.com" in message.body
    challenge = Challenge.objects.get(purpose="verify_email")
    assert (challenge.action, challenge.context, challenge.user_id) == ("new@example.com", {"change": True}, user.pk)
    page = client.get(VERIFY)
    assert "Enter the code we sent to n***@example.com to make it your account" in page.content.decode()

    wrong = client.post(VERIFY, {"code": wrong_code(code_from(message))})
    assert wrong.status_code == 400
    user.refresh_from_db()
    assert user.email == "alice@example.com"

    before = len(mailoutbox)
    done = client.post(VERIFY, {"code": code_from(message)})
    settle()
    assert done.status_code == 200
    assert "Your email address is now new@example.com." in done.content.decode()
    user.refresh_from_db()
    assert user.email == "new@example.com"
    assert list(VerifiedEmail.objects.values_list("user_id", "email")) == [(user.pk, "new@example.com")]

    [notice] = mailoutbox[before:]
    assert notice.to == ["alice@example.com"]
    assert notice.subject == "Example: your email address was changed"
    assert "Your account now uses n***@example.com instead of this address." in notice.body
    assert "Firefox on Linux" in notice.body
    assert not re.search(r"\b\d{6,10}\b", notice.body)  # no code, nothing to act on
    assert not re.search(r"\b\d{6,10}\b", str(notice.alternatives[0][0]))

    assert [(call["user"], call["email"], call["previous_email"]) for call in received] == [
        (user, "new@example.com", "alice@example.com")
    ]
    verified = AuditEvent.objects.get(event=AuditEventType.EMAIL_VERIFIED)
    changed = AuditEvent.objects.get(event=AuditEventType.EMAIL_CHANGED)
    assert (verified.user_id, verified.challenge_id) == (user.pk, challenge.pk)
    assert (changed.user_id, changed.outcome, set(changed.data)) == (user.pk, "success", {"previous"})
    assert "alice" not in str(changed.data)  # pseudonymised
    assert AuditEvent.objects.filter(event=AuditEventType.NOTICE_SENT, reason="email_changed").count() == 1


def test_a_code_for_one_address_cannot_confirm_another(
    user: Any, mailoutbox: list[EmailMessage], settings: Any
) -> None:
    settings.EMAIL_OTP_RESEND_COOLDOWN = 0  # asking for a second address at once
    client = Client()
    client.force_login(user)
    stepped_up(client, mailoutbox)
    ask_for(client, "first@example.com")
    first_code = code_from(mailoutbox[-1])
    first = Challenge.objects.get(purpose="verify_email")

    # Through the service: the code is bound to its address.
    result = services.verify_challenge(first.pk, first_code, action="second@example.com")
    assert result.reason == services.VerifyReason.WRONG_BINDING

    # Through the page: a session that claims another address gets nowhere, and no attempt is spent.
    session = client.session
    session["_emailotp_email"]["email"] = "second@example.com"
    session.save()
    refused = client.post(VERIFY, {"code": first_code})
    assert refused.status_code == 400
    assert "That code was not sent for this page." in refused.content.decode()
    first.refresh_from_db()
    assert (first.status, first.attempts) == (ChallengeStatus.PENDING, 0)

    # Asking for a second address supersedes the first code: it no longer confirms anything.
    ask_for(client, "second@example.com")
    stale = client.post(VERIFY, {"code": first_code})
    assert stale.status_code == 400
    user.refresh_from_db()
    assert user.email == "alice@example.com"
    assert VerifiedEmail.objects.count() == 0
    done = client.post(VERIFY, {"code": code_from(mailoutbox[-1])})
    assert done.status_code == 200
    user.refresh_from_db()
    assert user.email == "second@example.com"


def test_verifying_the_current_address(
    user: Any, mailoutbox: list[EmailMessage], received: list[dict[str, Any]]
) -> None:
    client = Client()
    client.force_login(user)
    page = client.get(VERIFY)
    assert page.status_code == 200
    assert "We will send a code to <strong>a***@example.com</strong>." in page.content.decode()
    assert services.email_verified(user) is False

    sent = client.post(SEND)
    settle()
    assert sent["Location"] == VERIFY
    [message] = mailoutbox
    assert message.to == ["alice@example.com"]
    done = client.post(VERIFY, {"code": code_from(message)})
    settle()
    assert done.status_code == 200
    assert "Your email address alice@example.com is verified." in done.content.decode()
    assert services.email_verified(user) is True
    assert len(mailoutbox) == 1  # no change, so no notice
    assert [(call["email"], call["previous_email"]) for call in received] == [("alice@example.com", None)]
    assert not AuditEvent.objects.filter(event=AuditEventType.EMAIL_CHANGED).exists()


def test_an_address_another_account_took_meanwhile_is_not_taken_over(
    user: Any, other_user: Any, mailoutbox: list[EmailMessage], received: list[dict[str, Any]]
) -> None:
    client = Client()
    client.force_login(user)
    stepped_up(client, mailoutbox)
    ask_for(client, "shared@example.com")
    code = code_from(mailoutbox[-1])
    other_user.email = "shared@example.com"
    other_user.save()
    done = client.post(VERIFY, {"code": code})
    assert done.status_code == 409
    assert "already used by another account" in done.content.decode()
    user.refresh_from_db()
    assert user.email == "alice@example.com"
    assert received == []
    failed = AuditEvent.objects.get(event=AuditEventType.EMAIL_CHANGED)
    assert (failed.outcome, failed.reason) == ("failure", "address_in_use")


def test_resend_issues_a_new_code_for_the_same_address(
    user: Any, mailoutbox: list[EmailMessage], settings: Any
) -> None:
    settings.EMAIL_OTP_RESEND_COOLDOWN = 0
    client = Client()
    client.force_login(user)
    stepped_up(client, mailoutbox)
    ask_for(client, "new@example.com")
    old_code = code_from(mailoutbox[-1])
    client.post(SEND)
    settle()
    assert mailoutbox[-1].to == ["new@example.com"]
    assert client.post(VERIFY, {"code": old_code}).status_code == 400
    assert client.post(VERIFY, {"code": code_from(mailoutbox[-1])}).status_code == 200
    user.refresh_from_db()
    assert user.email == "new@example.com"


def test_bound_action_is_shown_and_confirms_only_that_action(user: Any, mailoutbox: list[EmailMessage]) -> None:
    challenge = services.issue_challenge(user=user, purpose="step_up", action="Send 500 EUR to ACME Ltd")
    [message] = mailoutbox
    assert "It confirms only this action: Send 500 EUR to ACME Ltd" in message.body
    assert "Send 500 EUR to ACME Ltd" in str(message.alternatives[0][0])
    assert "500 EUR" not in message.subject
    code = code_from(message)

    other = services.verify_challenge(challenge.pk, code, action="Send 5000 EUR to Mallory")
    assert other.reason == services.VerifyReason.WRONG_BINDING
    challenge.refresh_from_db()
    assert (challenge.status, challenge.attempts) == (ChallengeStatus.PENDING, 0)
    assert services.verify_challenge(challenge.pk, code, action="Send 500 EUR to ACME Ltd").success
    again = services.verify_challenge(challenge.pk, code, action="Send 500 EUR to ACME Ltd")
    assert again.reason == services.VerifyReason.USED


def test_the_example_sites_security_page_links_both_pages(user: Any, mailoutbox: list[EmailMessage]) -> None:
    client = Client()
    client.force_login(user)
    stepped_up(client, mailoutbox)
    page = client.get("/security/")
    assert page.status_code == 200
    assert f'href="{VERIFY}"' in page.content.decode()
    assert f'href="{CHANGE}"' in page.content.decode()
