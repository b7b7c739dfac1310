"""Typed, read-through access to the ``EMAIL_OTP_*`` settings.

Every property reads ``django.conf.settings`` on each access, so ``override_settings`` just works.
Defaults live here and nowhere else; ``docs/settings.md`` documents each one and the check that guards it.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

DELIVERY_CELERY = "celery"
DELIVERY_SYNC = "sync"
FALLBACK_NONE = "none"
FALLBACK_SYNC = "sync"

DEFAULT_BROKER_RETRY_POLICY: dict[str, float] = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}


def _get(name: str, default: Any) -> Any:
    return getattr(settings, f"EMAIL_OTP_{name}", default)


class AppSettings:
    """One property per setting. Values are not validated here: system checks do that at start-up."""

    @property
    def CODE_LENGTH(self) -> int:
        """Digits in a code (6 to 10)."""
        return _get("CODE_LENGTH", 6)

    @property
    def CODE_TTL(self) -> int:
        """Seconds a code stays valid after it is issued (at most 600)."""
        return _get("CODE_TTL", 300)

    @property
    def MAX_ATTEMPTS(self) -> int:
        """Wrong guesses a code survives before it is burned."""
        return _get("MAX_ATTEMPTS", 5)

    @property
    def RESEND_COOLDOWN(self) -> int:
        """Seconds before a new code may replace the live one for the same user, purpose and binding."""
        return _get("RESEND_COOLDOWN", 60)

    @property
    def DELIVERY(self) -> str:
        """``"celery"`` (queue a task) or ``"sync"`` (send in-process after the transaction commits)."""
        return _get("DELIVERY", DELIVERY_CELERY)

    @property
    def DELIVERY_FALLBACK(self) -> str:
        """What to do when the Celery broker cannot be reached: ``"none"`` (raise) or ``"sync"``."""
        return _get("DELIVERY_FALLBACK", FALLBACK_NONE)

    @property
    def DELIVERY_MAX_RETRIES(self) -> int:
        """Retries of a send that failed transiently (ESP 5xx, timeouts, SMTP connection errors)."""
        return _get("DELIVERY_MAX_RETRIES", 5)

    @property
    def DELIVERY_RETRY_BACKOFF(self) -> float:
        """Base of the exponential backoff between delivery retries, in seconds."""
        return _get("DELIVERY_RETRY_BACKOFF", 2.0)

    @property
    def DELIVERY_RETRY_BACKOFF_MAX(self) -> float:
        """Upper bound of one backoff interval, in seconds."""
        return _get("DELIVERY_RETRY_BACKOFF_MAX", 60.0)

    @property
    def BROKER_RETRY_POLICY(self) -> dict[str, float]:
        """kombu publish retry policy; kept short so a dead broker fails fast instead of hanging a request."""
        return _get("BROKER_RETRY_POLICY", DEFAULT_BROKER_RETRY_POLICY)

    @property
    def CELERY_QUEUE(self) -> str | None:
        """Queue for the send task; ``None`` uses Celery's default routing."""
        return _get("CELERY_QUEUE", None)

    @property
    def FROM_EMAIL(self) -> str:
        """Sender of code emails; falls back to ``DEFAULT_FROM_EMAIL``."""
        return _get("FROM_EMAIL", None) or settings.DEFAULT_FROM_EMAIL

    @property
    def SITE_NAME(self) -> str:
        """Name shown in emails; falls back to the host of ``EMAIL_OTP_SITE_URL``."""
        name: str | None = _get("SITE_NAME", None)
        if name:
            return name
        from urllib.parse import urlsplit

        return urlsplit(self.SITE_URL or "").hostname or "Django"

    @property
    def SITE_URL(self) -> str | None:
        """Absolute base URL (``https://example.com``) for links in emails; never taken from the Host header."""
        return _get("SITE_URL", None)

    @property
    def PURPOSES(self) -> dict[str, str]:
        """Extra purposes a project registers: ``{"payout": "confirm a payout"}``."""
        return _get("PURPOSES", {})

    @property
    def TRUSTED_PROXY_COUNT(self) -> int:
        """Reverse proxies in front of Django that append to X-Forwarded-For; 0 trusts only REMOTE_ADDR."""
        return _get("TRUSTED_PROXY_COUNT", 0)

    @property
    def STEP_UP_MAX_AGE(self) -> int:
        """Seconds a step-up grant lasts (the default window of ``step_up_required``); at most 12 hours."""
        return _get("STEP_UP_MAX_AGE", 300)

    @property
    def STEP_UP_SLIDING(self) -> bool:
        """Renew a grant's window each time a protected view is used (off: the window runs from the code)."""
        return _get("STEP_UP_SLIDING", False)

    @property
    def PROTECTED_URLS(self) -> list[str]:
        """URL names (``"admin:*"``, ``"billing:invoice"``), or path regexes starting with ``^``, that need
        step-up. A leading ``!`` exempts matching URLs again (``"!admin:logout"``)."""
        return _get("PROTECTED_URLS", [])

    @property
    def STEP_UP_REPLAY(self) -> bool:
        """Keep a POST that hit a protected view without a grant and re-submit it once after verification."""
        return _get("STEP_UP_REPLAY", True)


app_settings = AppSettings()
