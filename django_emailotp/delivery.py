"""Building the code email, checking and masking addresses, classifying send failures. Sending is in
``services/delivery.py``."""

from __future__ import annotations

import smtplib
from datetime import UTC, datetime
from email.utils import parseaddr
from typing import Any

from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives
from django.core.validators import validate_email
from django.template.loader import render_to_string
from django.utils import timezone, translation

from django_emailotp.conf import app_settings
from django_emailotp.exceptions import NoEmailAddress
from django_emailotp.models import Challenge
from django_emailotp.purposes import purpose_label

TEMPLATE_DIR = "django_emailotp/email"
ANYMAIL_TAG = "emailotp"


def clean_address(value: object) -> str:
    """A single, valid address with no display name and no line breaks (no header injection)."""
    if not isinstance(value, str):
        raise NoEmailAddress("An email address is required.")
    address = value.strip()
    if not address or any(ch in address for ch in "\r\n\0,;<>") or parseaddr(address)[1] != address:
        raise NoEmailAddress("Not a single valid email address.")
    try:
        validate_email(address)
    except ValidationError:
        raise NoEmailAddress("Not a single valid email address.") from None
    return address


def mask_address(address: str) -> str:
    """``jane@example.com`` -> ``j***@example.com``; what pages show of the destination."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


def email_context(challenge: Challenge, code: str, now: datetime | None = None) -> dict[str, Any]:
    now = now or timezone.now()
    return {
        "code": code,
        "challenge": challenge,
        "purpose": challenge.purpose,
        "purpose_label": purpose_label(challenge.purpose),
        "action": challenge.action,
        "site_name": app_settings.SITE_NAME,
        "site_url": app_settings.SITE_URL,
        "expires_at": challenge.expires_at,
        "expires_at_utc": challenge.expires_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M"),
        "expires_in_minutes": max(1, round((challenge.expires_at - now).total_seconds() / 60)),
        "email": challenge.email,
    }


def build_message(challenge: Challenge, code: str) -> EmailMultiAlternatives:
    """The code email: subject (never the code), plain text and HTML, from overridable templates."""
    context = email_context(challenge, code)
    language = getattr(challenge.user, "language", None) if challenge.user_id else None
    with translation.override(language or translation.get_language()):
        subject = " ".join(render_to_string(f"{TEMPLATE_DIR}/subject.txt", context).split())
        text = render_to_string(f"{TEMPLATE_DIR}/body.txt", context)
        html = render_to_string(f"{TEMPLATE_DIR}/body.html", context)
    message = EmailMultiAlternatives(
        subject=subject,
        body=text,
        from_email=app_settings.FROM_EMAIL,
        to=[clean_address(challenge.email)],
        headers={"Auto-Submitted": "auto-generated", "X-Auto-Response-Suppress": "All"},
    )
    message.attach_alternative(html, "text/html")
    if anymail_installed():
        # anymail maps these onto each ESP's tags and metadata; webhooks bring the metadata back. One tag only:
        # several ESPs (Postmark among them) take a single tag and anymail refuses to send a message with more.
        message.tags = [ANYMAIL_TAG]  # type: ignore[attr-defined]
        message.metadata = {  # type: ignore[attr-defined]
            "emailotp_challenge": str(challenge.pk),
            "emailotp_purpose": challenge.purpose,
        }
    return message


def anymail_installed() -> bool:
    try:
        import anymail  # noqa: F401
    except ImportError:
        return False
    return True


def sent_message_id(message: EmailMultiAlternatives) -> str:
    """The ESP's message id when the backend is anymail's; "" otherwise."""
    status = getattr(message, "anymail_status", None)
    message_id = getattr(status, "message_id", None)
    return str(message_id) if message_id else ""


TRANSIENT_SMTP_CODES = range(400, 500)


def is_transient(error: BaseException) -> bool:
    """Whether trying the send again may succeed: ESP 5xx/429, timeouts and connection errors, SMTP 4xx."""
    if anymail_installed():
        from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused

        if isinstance(error, AnymailRecipientsRefused):
            return False
        if isinstance(error, AnymailAPIError):
            status = error.status_code
            return status is None or status >= 500 or status == 429
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return all(code in TRANSIENT_SMTP_CODES for code, _msg in error.recipients.values())
    if isinstance(error, smtplib.SMTPResponseException):
        return error.smtp_code in TRANSIENT_SMTP_CODES
    if isinstance(error, smtplib.SMTPServerDisconnected | smtplib.SMTPConnectError):
        return True
    if isinstance(error, smtplib.SMTPException):
        return False
    # Timeouts, refused and reset connections: socket.timeout and ConnectionError are OSErrors.
    return isinstance(error, OSError)
