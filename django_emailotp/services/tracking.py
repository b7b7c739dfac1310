"""Delivery tracking: what the ESP reports about a code email (anymail's tracking webhooks), on its challenge.

Updates ``Challenge.delivery_status`` (a late "deferred" never replaces a final status) and writes
``delivery_status`` audit rows, with the recipient only as its pseudonym.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from django_emailotp import audit, signals
from django_emailotp.crypto import email_pseudonym
from django_emailotp.models import AuditEventType, AuditOutcome, Challenge, DeliveryStatus
from django_emailotp.services.common import as_uuid, logger

# anymail's normalized event types (anymail.signals.EventType) that say where the code email ended up. Others
# (queued, sent, opened, clicked, unsubscribed, autoresponded, unknown, ...) say nothing new and are ignored.
_DELIVERY_STATUS_FOR_EVENT: dict[str, tuple[DeliveryStatus, AuditOutcome]] = {
    "delivered": (DeliveryStatus.DELIVERED, AuditOutcome.SUCCESS),
    "deferred": (DeliveryStatus.DEFERRED, AuditOutcome.INFO),
    "bounced": (DeliveryStatus.BOUNCED, AuditOutcome.FAILURE),
    "rejected": (DeliveryStatus.REJECTED, AuditOutcome.FAILURE),
    "complained": (DeliveryStatus.COMPLAINED, AuditOutcome.FAILURE),
    "failed": (DeliveryStatus.FAILED, AuditOutcome.FAILURE),
}
# What the receiving side finally did with the email; a late "deferred" (webhooks arrive out of order) never
# replaces one of these, and a complaint implies delivery, so a late "delivered" does not replace it either.
FINAL_DELIVERY_STATUSES = frozenset(
    {
        DeliveryStatus.DELIVERED,
        DeliveryStatus.BOUNCED,
        DeliveryStatus.REJECTED,
        DeliveryStatus.COMPLAINED,
        DeliveryStatus.FAILED,
    }
)
MAX_DESCRIPTION_LENGTH = 500


def _challenge_for_esp_message(message_id: str | None, metadata: dict[str, Any] | None) -> Challenge | None:
    if message_id:
        challenge = Challenge.objects.filter(esp_message_id=message_id).first()
        if challenge is not None:
            return challenge
    # delivery.build_message puts the challenge id into the ESP metadata; the webhook brings it back.
    pk = as_uuid((metadata or {}).get("emailotp_challenge"))
    return Challenge.objects.filter(pk=pk).first() if pk is not None else None


def _without_address(text: str, address: str | None) -> str:
    """ESP descriptions may quote the recipient ("550 5.1.1 <jane@example.com>: ..."); the audit trail must not."""
    if address:
        text = re.sub(re.escape(address), "[recipient]", text, flags=re.IGNORECASE)
    return text[:MAX_DESCRIPTION_LENGTH]


def record_delivery_event(
    *,
    message_id: str | None,
    event_type: str,
    esp_name: str,
    timestamp: datetime | None = None,
    recipient: str | None = None,
    description: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Challenge | None:
    """Record what the ESP reported about a code email (an anymail tracking event) on its challenge.

    The challenge is found by the ESP message id, else by the ``emailotp_challenge`` metadata. Delivered, deferred,
    bounced, rejected, complained and failed update ``Challenge.delivery_status`` (a late "deferred" never replaces
    a final status) and write a ``delivery_status`` audit row; the address is recorded only as its pseudonym.
    Returns the challenge, or None when the message is not one of ours or the event says nothing about delivery.
    """
    mapped = _DELIVERY_STATUS_FOR_EVENT.get(event_type)
    if mapped is None:
        logger.debug("emailotp: ignoring %s %r event for message %r", esp_name, event_type, message_id)
        return None
    challenge = _challenge_for_esp_message(message_id, metadata)
    if challenge is None:
        logger.debug("emailotp: %s %r event for unknown message %r ignored", esp_name, event_type, message_id)
        return None
    status, outcome = mapped
    rows = Challenge.objects.filter(pk=challenge.pk)
    if status == DeliveryStatus.DEFERRED:
        rows = rows.exclude(delivery_status__in=FINAL_DELIVERY_STATUSES)
    elif status == DeliveryStatus.DELIVERED:
        rows = rows.exclude(delivery_status=DeliveryStatus.COMPLAINED)
    # One conditional UPDATE: concurrent webhooks for the same message cannot downgrade each other either.
    applied = bool(rows.update(delivery_status=status))
    challenge.refresh_from_db(fields=["delivery_status"])
    data: dict[str, Any] = {
        "esp": esp_name,
        "event": event_type,
        "description": _without_address(description or "", recipient),
    }
    if timestamp is not None:
        data["esp_timestamp"] = timestamp.isoformat()
    if not applied:
        data["kept_status"] = challenge.delivery_status
    extra = {"email_pseudonym": email_pseudonym(recipient)} if recipient else {}
    audit.record(AuditEventType.DELIVERY_STATUS, outcome, challenge=challenge, reason=status, data=data, **extra)
    signals.challenge_delivery_status.send(
        sender=Challenge, challenge=challenge, status=status, event=event_type, esp_name=esp_name
    )
    return challenge
