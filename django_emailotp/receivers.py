"""Receivers connected in ``AppConfig.ready()``."""

from __future__ import annotations

from typing import Any

from django_emailotp import services


def revoke_grants_on_logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    """Logging out ends the session's step-up grants (before the session is flushed)."""
    if user is not None:
        services.revoke_step_up_grants(user, request=request)
