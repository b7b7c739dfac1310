"""Building audit rows. Only services write them; see SECURITY.md rule 14."""

from __future__ import annotations

from typing import Any

from django_emailotp.crypto import email_pseudonym
from django_emailotp.models import AuditEvent, AuditEventType, AuditOutcome, Challenge
from django_emailotp.requestinfo import EMPTY_META, RequestMeta


def build_event(
    event: AuditEventType,
    outcome: AuditOutcome,
    *,
    challenge: Challenge | None = None,
    reason: str = "",
    meta: RequestMeta = EMPTY_META,
    data: dict[str, Any] | None = None,
    **fields: Any,
) -> AuditEvent:
    """An unsaved event; ``challenge`` fills user, purpose, address pseudonym and challenge id."""
    if challenge is not None:
        fields.setdefault("user_id", challenge.user_id)
        fields.setdefault("purpose", challenge.purpose)
        fields.setdefault("challenge_id", challenge.pk)
        fields.setdefault("email_pseudonym", email_pseudonym(challenge.email))
    return AuditEvent(
        event=event,
        outcome=outcome,
        reason=reason,
        ip_address=meta.ip_address,
        user_agent=meta.user_agent,
        session_hash=meta.binding,
        data=data or {},
        **fields,
    )


def record(*args: Any, **kwargs: Any) -> AuditEvent:
    event = build_event(*args, **kwargs)
    event.save(force_insert=True)
    return event
