"""The code email (subject, text and HTML bodies, headers, ESP tags), address validation and failure classification."""

from __future__ import annotations

import re
import smtplib
from functools import partial
from typing import Any

import pytest
import requests
import time_machine
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.test import override_settings

from django_emailotp.delivery import is_transient, mask_address
from django_emailotp.exceptions import NoEmailAddress
from django_emailotp.models import AuditEvent, Challenge
from django_emailotp.services import issue_challenge
from tests.factories import UserFactory
from tests.test_issue import T0, Capture, Issue, issue_and_read

ACTION = "Send 500 EUR to ACME"
NEVER_ASK = "We will never ask you for this code by phone, chat or email. Do not share it with anyone."
DID_NOT_ASK = "If you did not ask for this code, you can ignore this email: nothing happens without it."


@pytest.fixture
def issue(db: None, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]) -> Issue:
    return partial(issue_and_read, django_capture_on_commit_callbacks, mailoutbox)


def html_of(message: EmailMessage) -> str:
    assert isinstance(message, EmailMultiAlternatives)
    [(html, mimetype)] = message.alternatives
    assert mimetype == "text/html"
    return str(html)


def test_the_code_email(user: Any, issue: Issue, mailoutbox: list[EmailMessage]) -> None:
    with time_machine.travel(T0, tick=False):
        challenge, code = issue(user=user, purpose="step_up", action=ACTION)
    [message] = mailoutbox

    assert message.subject == "Your Example verification code"
    assert code not in message.subject
    assert (message.from_email, message.to, message.cc, message.bcc) == (
        "Example <no-reply@example.com>",
        ["alice@example.com"],
        [],
        [],
    )
    assert message.extra_headers == {"Auto-Submitted": "auto-generated", "X-Auto-Response-Suppress": "All"}

    text = str(message.body)
    assert text.startswith("Your Example code\n")
    assert "Use this code to confirm it is you:\n\n    " + code + "\n" in text
    assert f"It confirms only this action: {ACTION}" in text
    assert "The code expires in 5 minutes (2026-03-02 09:05 UTC) and works once." in text
    assert NEVER_ASK in text
    assert DID_NOT_ASK in text
    assert "Example - https://example.com" in text

    html = html_of(message)
    assert '<html lang="en">' in html
    assert "<title>Your Example code</title>" in html
    assert html.count('role="presentation"') == 2
    assert not re.search(r"<table(?![^>]*role=\"presentation\")", html)
    assert "Use this code to confirm it is you:" in html
    assert f">{code}</p>" in html
    assert f"It confirms only this action: <strong>{ACTION}</strong>" in html
    assert "The code expires in 5 minutes (2026-03-02 09:05 UTC) and works once." in html
    assert NEVER_ASK in html
    assert DID_NOT_ASK in html
    assert '<a href="https://example.com"' in html

    # The whole message as it goes over the wire: the code only in the bodies, never in a header.
    wire = message.message()
    headers = "\n".join(f"{name}: {value}" for name, value in wire.items())
    assert code not in headers
    assert challenge.email in headers


def test_without_an_action_no_action_line(user: Any, issue: Issue, mailoutbox: list[EmailMessage]) -> None:
    issue(user=user, purpose="verify_email")
    assert "Use this code to verify your email address:" in str(mailoutbox[0].body)
    assert "It confirms only this action" not in str(mailoutbox[0].body)
    assert "It confirms only this action" not in html_of(mailoutbox[0])


@override_settings(EMAIL_OTP_CODE_TTL=60, EMAIL_OTP_RESEND_COOLDOWN=30)
def test_expiry_in_one_minute_is_singular(user: Any, issue: Issue, mailoutbox: list[EmailMessage]) -> None:
    issue(user=user, purpose="login")
    assert "The code expires in 1 minute (" in str(mailoutbox[0].body)
    assert "The code expires in 1 minute (" in html_of(mailoutbox[0])


@override_settings(EMAIL_OTP_SITE_NAME="Acme & Co", EMAIL_OTP_PURPOSES={"payout": "confirm a payout"})
def test_site_name_action_and_project_purpose_are_escaped_in_html(
    user: Any, issue: Issue, mailoutbox: list[EmailMessage]
) -> None:
    issue(user=user, purpose="payout", action='Pay <script>alert("x")</script> to "ACME"')
    [message] = mailoutbox
    assert message.subject == "Your Acme & Co verification code"
    assert 'It confirms only this action: Pay <script>alert("x")</script> to "ACME"' in str(message.body)
    html = html_of(message)
    assert "<script>" not in html
    assert "Pay &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; to &quot;ACME&quot;" in html
    assert "<title>Your Acme &amp; Co code</title>" in html
    assert "Use this code to confirm a payout:" in html


def test_esp_tags_and_metadata_when_anymail_is_installed(
    user: Any, issue: Issue, mailoutbox: list[EmailMessage]
) -> None:
    pytest.importorskip("anymail")
    challenge, _code = issue(user=user, purpose="step_up")
    message = mailoutbox[0]
    # One tag: several ESPs (Postmark among them) accept only one; the purpose travels in the metadata.
    assert message.tags == ["emailotp"]  # type: ignore[attr-defined]
    assert message.metadata == {  # type: ignore[attr-defined]
        "emailotp_challenge": str(challenge.pk),
        "emailotp_purpose": "step_up",
    }


# ---------------------------------------------------------------------------------------------------------------
# Addresses


@pytest.mark.parametrize(
    "address",
    [
        "victim@example.com\r\nBcc: attacker@evil.example",
        "victim@example.com\nBcc: attacker@evil.example",
        "victim@example.com\rBcc: attacker@evil.example",
        "victim@example.com, attacker@evil.example",
        "victim@example.com; attacker@evil.example",
        "Victim <victim@example.com>",
        "<victim@example.com>",
        '"Victim" victim@example.com',
        "victim@example.com\x00",
        "victim@example.com (comment)",
        "not-an-address",
        "@example.com",
        "",
        "   ",
    ],
)
def test_addresses_that_could_inject_headers_are_refused(
    db: None, mailoutbox: list[EmailMessage], django_capture_on_commit_callbacks: Capture, address: str
) -> None:
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(NoEmailAddress):
        issue_challenge(email=address, purpose="sign_in")
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(NoEmailAddress):
        # Unsaved: PostgreSQL would refuse to store the NUL byte before the engine had a chance to.
        issue_challenge(user=UserFactory.build(username="mallory", email=address), purpose="login")
    assert Challenge.objects.count() == 0
    assert AuditEvent.objects.count() == 0
    assert mailoutbox == []


def test_surrounding_spaces_are_trimmed(db: None, issue: Issue, mailoutbox: list[EmailMessage]) -> None:
    challenge, _code = issue(email="  carol@example.com ", purpose="sign_in")
    assert challenge.email == "carol@example.com"
    assert mailoutbox[0].to == ["carol@example.com"]


@pytest.mark.parametrize(
    ("address", "masked"),
    [
        ("jane@example.com", "j***@example.com"),
        ("j@example.com", "j***@example.com"),
        ("jane.doe+otp@mail.example.org", "j***@mail.example.org"),
    ],
)
def test_mask_address(address: str, masked: str) -> None:
    assert mask_address(address) == masked


# ---------------------------------------------------------------------------------------------------------------
# Transient or permanent send failures


def http_response(status: int, body: bytes) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.reason = "status text"
    response._content = body
    response.headers["Content-Type"] = "application/json"
    return response


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (smtplib.SMTPRecipientsRefused({"a@example.com": (550, b"5.1.1 No such user")}), False),
        (smtplib.SMTPRecipientsRefused({"a@example.com": (451, b"4.7.1 Greylisted, try again")}), True),
        (smtplib.SMTPRecipientsRefused({"a@example.com": (451, b"later"), "b@example.com": (550, b"no")}), False),
        (smtplib.SMTPDataError(451, b"4.3.0 Temporary failure"), True),
        (smtplib.SMTPDataError(554, b"5.7.1 Message rejected as spam"), False),
        (smtplib.SMTPSenderRefused(553, b"5.7.1 Sender not allowed", "otp@example.com"), False),
        (smtplib.SMTPAuthenticationError(535, b"5.7.8 Bad credentials"), False),
        (smtplib.SMTPConnectError(421, b"4.3.2 Too busy"), True),
        (smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), True),
        (smtplib.SMTPNotSupportedError("STARTTLS extension not supported"), False),
        (ConnectionRefusedError(111, "Connection refused"), True),
        (ConnectionResetError(104, "Connection reset by peer"), True),
        (TimeoutError("timed out"), True),
        (ValueError("template error"), False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_smtp_and_network_errors(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient


@pytest.mark.parametrize(
    ("status", "transient"),
    [(503, True), (500, True), (502, True), (429, True), (400, False), (401, False), (422, False)],
)
def test_anymail_api_errors(status: int, transient: bool) -> None:
    exceptions = pytest.importorskip("anymail.exceptions")
    # Postmark's error payload, as anymail's requests-based backends receive it.
    response = http_response(status, b'{"ErrorCode": 300, "Message": "Invalid \'To\' address: \'x\'."}')
    error = exceptions.AnymailRequestsAPIError(
        "Postmark API response", status_code=status, response=response, esp_name="Postmark"
    )
    assert is_transient(error) is transient
    assert is_transient(exceptions.AnymailAPIError("ESP error", status_code=status)) is transient


def test_anymail_errors_without_a_status_and_refused_recipients() -> None:
    exceptions = pytest.importorskip("anymail.exceptions")
    # No HTTP response at all (connection failed before the ESP answered): worth another try.
    assert is_transient(exceptions.AnymailAPIError("ESP unreachable")) is True
    assert is_transient(exceptions.AnymailRecipientsRefused("All recipients were rejected")) is False
