"""Small helpers the service modules share. Owns no flow and writes no rows."""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Container
from datetime import datetime
from typing import Any

from django_emailotp.crypto import binding_hash

logger = logging.getLogger("django_emailotp")


def as_uuid(value: object) -> uuid.UUID | None:
    """``value`` as a UUID, or None when it is not one (ids come from URLs and JSON)."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        return None


def purpose_matches(actual: str, expected: str | Container[str]) -> bool:
    """Whether ``actual`` is the expected purpose (a name) or one of them (a container of names)."""
    return actual == expected if isinstance(expected, str) else actual in expected


def auth_hash(user: Any) -> str:
    """A keyed hash of the user's session auth hash: it changes with the password, which ends what it guards."""
    return binding_hash("auth:" + user.get_session_auth_hash())


def seconds_until(moment: datetime, now: datetime) -> int:
    """Whole seconds from ``now`` to ``moment``, at least 1 (what a Retry-After says)."""
    return max(1, math.ceil((moment - now).total_seconds()))
