"""Keeping a POST that hit a protected view without a grant, to re-submit it once after verification.

The saved form goes back only to the path it was posted to, only once, and not after its challenge expires.
Uploaded files are not kept (document: a form with files is re-shown empty).
"""

from __future__ import annotations

import secrets
from typing import Any

from django.utils import timezone

from django_emailotp.conf import app_settings

SESSION_KEY = "_emailotp_replay"
MAX_SAVED_BYTES = 64 * 1024
# Not worth replaying: the CSRF token is refreshed on the replay page.
SKIPPED_FIELDS = frozenset({"csrfmiddlewaretoken"})


def save(request: Any, action: str = "") -> str | None:
    """Store the request's POST fields in the session; return a token, or None when it cannot be kept.

    ``action`` is the bound action the protected view computed from this POST: the code sent for it names it.
    """
    if not app_settings.STEP_UP_REPLAY or request.FILES:
        return None
    fields = [(name, value) for name, values in request.POST.lists() if name not in SKIPPED_FIELDS for value in values]
    if sum(len(name) + len(value) for name, value in fields) > MAX_SAVED_BYTES:
        return None
    token = secrets.token_urlsafe(16)
    # Until a code is sent for it, the saved form lives as long as a code would.
    expires = timezone.now().timestamp() + app_settings.CODE_TTL
    request.session[SESSION_KEY] = {
        "token": token,
        "path": request.path,
        "fields": fields,
        "expires": expires,
        "action": action,
    }
    return token


def kept_action(request: Any, token: str) -> str:
    """The bound action kept with the saved form ``token`` names; "" when there is none (or it expired)."""
    saved = request.session.get(SESSION_KEY)
    if not saved or not isinstance(token, str) or not secrets.compare_digest(saved["token"], token):
        return ""
    if saved["expires"] < timezone.now().timestamp():
        return ""
    return str(saved.get("action", ""))


def bind_to_challenge(request: Any, token: str, expires_at_timestamp: float) -> None:
    """A code was sent: the saved form now expires with that challenge."""
    saved = request.session.get(SESSION_KEY)
    if saved and secrets.compare_digest(saved["token"], token):
        saved["expires"] = expires_at_timestamp
        request.session.modified = True


def pop(request: Any, token: str) -> dict[str, Any] | None:
    """Take the saved form out of the session (it replays once); None when missing, another token or expired."""
    saved = request.session.get(SESSION_KEY)
    if not saved or not isinstance(token, str) or not secrets.compare_digest(saved["token"], token):
        return None
    del request.session[SESSION_KEY]
    if saved["expires"] < timezone.now().timestamp():
        return None
    return saved
