"""Security notices emailed to users (SECURITY.md rule 13): lockout, success after wrong codes, backup codes used
or regenerated, second factor on or off, email address changed.

A notice never carries a secret: no code, no link that signs in. Its details (the replaced address, the IP
address of a lockout, the device) are stored in a ``Notice`` row, and only that row's id goes through the queue
(``dispatch``) after the transaction commits, else it is sent in-process. Failures are logged, never raised: a
notice must not break the request that caused it. Writes ``Notice`` rows (deleted once sent) and ``notice_sent``
audit rows.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from functools import partial
from typing import Any

from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.template.loader import render_to_string

from django_emailotp import audit
from django_emailotp.conf import app_settings
from django_emailotp.crypto import email_pseudonym
from django_emailotp.delivery import clean_address
from django_emailotp.exceptions import DeliveryUnavailable
from django_emailotp.models import AuditEventType, AuditOutcome, Notice
from django_emailotp.services import dispatch
from django_emailotp.services.common import as_uuid

logger = logging.getLogger("django_emailotp")

LOCKED_OUT = "locked_out"
BACKUP_CODE_USED = "backup_code_used"
BACKUP_CODES_REGENERATED = "backup_codes_regenerated"
SECOND_FACTOR_ENABLED = "second_factor_enabled"
SECOND_FACTOR_DISABLED = "second_factor_disabled"
# Sent to the address that was replaced (notify(..., to=old_address)), never to the new one.
EMAIL_CHANGED = "email_changed"
# A right code after at least EMAIL_OTP_NOTIFY_AFTER_FAILURES wrong ones in a row.
SUCCESS_AFTER_FAILURES = "success_after_failures"
KINDS = frozenset(
    {LOCKED_OUT, BACKUP_CODE_USED, BACKUP_CODES_REGENERATED, SECOND_FACTOR_ENABLED, SECOND_FACTOR_DISABLED}
    | {EMAIL_CHANGED, SUCCESS_AFTER_FAILURES}
)
TEMPLATE_DIR = "django_emailotp/email/notices"


def coarse_device(user_agent: str) -> str:
    """ "Firefox on Linux"-style text from a user agent, enough to recognise a device, no more."""
    browsers = ("Edg", "OPR", "Firefox", "Chrome", "Safari")
    systems = ("Windows", "Android", "iPhone", "iPad", "Mac OS X", "Linux")
    browser = next((name for name in browsers if name in user_agent), "")
    system = next((name for name in systems if name in user_agent), "")
    names = {"Edg": "Edge", "OPR": "Opera", "Mac OS X": "macOS"}
    browser, system = names.get(browser, browser), names.get(system, system)
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or "an unknown device"


def _plain(context: dict[str, Any]) -> dict[str, str | int]:
    """Strings and whole numbers only, so the context can travel through the broker; times as UTC ISO-8601."""
    return {key: _plain_value(value) for key, value in context.items()}


def _plain_value(value: Any) -> str | int:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return str(value)


def notify(user: Any, kind: str, context: dict[str, Any], *, to: str | None = None) -> None:
    """Email ``user`` the ``kind`` notice after the current transaction commits (if notices are on).

    It goes to the user's address as it is when the notice is sent, or to ``to`` when given (an address the user
    just replaced). The details are stored in a ``Notice`` row in the same transaction; the queue gets its id only.
    """
    if kind not in KINDS:
        raise ValueError(f"Unknown notice kind {kind!r}")
    if not app_settings.NOTIFY_USERS or not (to or getattr(user, user.get_email_field_name(), "")):
        return
    notice = Notice.objects.create(user_id=user.pk, kind=kind, recipient=to or "", context=_plain(context))
    transaction.on_commit(partial(_dispatch, notice.pk, kind))


def _dispatch(notice_id: uuid.UUID, kind: str) -> None:
    queue = dispatch.queue()
    if queue is None:
        send_notice(notice_id)
        return
    try:
        queue.enqueue_notice(notice_id)
    except DeliveryUnavailable:  # the broker is down: send it here rather than lose it
        logger.warning("emailotp: queueing a %s notice failed; sending it in-process", kind)
        send_notice(notice_id)


def build_notice(
    kind: str, user: Any, context: dict[str, str | int], *, to: str | None = None
) -> EmailMultiAlternatives:
    full = {
        **context,
        "user": user,
        "site_name": app_settings.SITE_NAME,
        "site_url": app_settings.SITE_URL,
        "kind": kind,
    }
    if "locked_until" in context:
        full["locked_until_utc"] = datetime.fromisoformat(str(context["locked_until"])).strftime("%Y-%m-%d %H:%M")
    subject = " ".join(render_to_string(f"{TEMPLATE_DIR}/{kind}_subject.txt", full).split())
    message = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string(f"{TEMPLATE_DIR}/{kind}.txt", full),
        from_email=app_settings.FROM_EMAIL,
        to=[clean_address(to or getattr(user, user.get_email_field_name()))],
        headers={"Auto-Submitted": "auto-generated"},
    )
    message.attach_alternative(render_to_string(f"{TEMPLATE_DIR}/{kind}.html", full), "text/html")
    return message


def send_notice(notice_id: uuid.UUID | str) -> bool:
    """Build and send one stored notice now (to its recipient, else the user's address); audit it and delete the
    row, so its details live no longer than needed. Returns whether it was sent; a notice already sent (a queue
    that delivered its message twice) is not sent again."""
    pk = as_uuid(notice_id)
    notice = Notice.objects.select_related("user").filter(pk=pk).first() if pk is not None else None
    if notice is None:
        return False
    user, kind, to = notice.user, notice.kind, notice.recipient or None
    address: str = to or getattr(user, user.get_email_field_name(), "") or ""
    try:
        build_notice(kind, user, notice.context, to=to).send(fail_silently=False)
    except Exception as exc:  # a notice must never break the request that caused it
        logger.error(
            "emailotp: sending the %s notice to %s failed: %s", kind, email_pseudonym(address), type(exc).__name__
        )
        return False
    Notice.objects.filter(pk=notice.pk).delete()
    audit.record(
        AuditEventType.NOTICE_SENT,
        AuditOutcome.INFO,
        reason=kind,
        user_id=user.pk,
        email_pseudonym=email_pseudonym(address),
    )
    return True


def notice_pending(notice_id: uuid.UUID | str) -> bool:
    """Whether the notice is still waiting to be sent (a queue retries only those)."""
    pk = as_uuid(notice_id)
    return pk is not None and Notice.objects.filter(pk=pk).exists()
