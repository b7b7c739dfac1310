"""Receivers connected in ``AppConfig.ready()``."""

from __future__ import annotations

from typing import Any

from django_emailotp import services


def revoke_grants_on_logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    """Logging out ends the session's step-up grants (before the session is flushed)."""
    if user is not None:
        services.revoke_step_up_grants(user, request=request)


def record_esp_tracking_event(sender: Any, event: Any, esp_name: str, **kwargs: Any) -> None:
    """anymail's ``tracking`` signal (a webhook from the ESP): record delivery results of code emails."""
    services.record_delivery_event(
        message_id=event.message_id,
        event_type=event.event_type,
        esp_name=esp_name,
        timestamp=event.timestamp,
        recipient=event.recipient,
        description=event.description,
        metadata=event.metadata,
    )
