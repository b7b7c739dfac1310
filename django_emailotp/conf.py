"""Typed, read-through access to the ``EMAIL_OTP_*`` settings.

Every property reads ``django.conf.settings`` on each access, so ``override_settings`` just works.
Defaults live here and nowhere else; ``docs/settings.md`` documents each one and the check that guards it.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

DELIVERY_CELERY = "celery"
DELIVERY_TASKS = "tasks"
DELIVERY_SYNC = "sync"
FALLBACK_NONE = "none"
FALLBACK_SYNC = "sync"
LOGIN_POLICY_OFF = "off"
LOGIN_POLICY_OPTIONAL = "optional"
LOGIN_POLICY_REQUIRED = "required"
LOGIN_POLICY_REQUIRED_STAFF = "required_staff"
LOGIN_POLICIES = (LOGIN_POLICY_OFF, LOGIN_POLICY_OPTIONAL, LOGIN_POLICY_REQUIRED, LOGIN_POLICY_REQUIRED_STAFF)

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
        """``"celery"`` (queue a Celery task), ``"tasks"`` (enqueue a Django Tasks task) or ``"sync"`` (send
        in-process after the transaction commits)."""
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
    def DELIVERY_LEASE(self) -> int:
        """Seconds a queued or in-flight delivery may take before the sweep hands it to the queue again."""
        return _get("DELIVERY_LEASE", 60)

    @property
    def BROKER_RETRY_POLICY(self) -> dict[str, float]:
        """kombu publish retry policy; kept short so a dead broker fails fast instead of hanging a request."""
        return _get("BROKER_RETRY_POLICY", DEFAULT_BROKER_RETRY_POLICY)

    @property
    def CELERY_QUEUE(self) -> str | None:
        """Queue for the send task; ``None`` uses Celery's default routing."""
        return _get("CELERY_QUEUE", None)

    @property
    def TASKS_QUEUE(self) -> str | None:
        """Django Tasks queue name for the app's tasks (``EMAIL_OTP_DELIVERY = "tasks"``); ``None``: the default."""
        return _get("TASKS_QUEUE", None)

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
    def IPV6_PREFIX_LENGTH(self) -> int:
        """How per-IP rate limits group IPv6 clients: by this network prefix (a /64 is one site or subscriber)."""
        return _get("IPV6_PREFIX_LENGTH", 64)

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

    @property
    def RATES(self) -> dict[str, str | None]:
        """Overrides of the rate limits in ``limits.DEFAULT_RATES`` ("5/h", "20/d", ...; None switches one off)."""
        return _get("RATES", {})

    @property
    def LOCKOUT_THRESHOLD(self) -> int:
        """Consecutive wrong codes (across codes and sessions) that lock a user's email-code path."""
        return _get("LOCKOUT_THRESHOLD", 10)

    @property
    def LOCKOUT_DURATION(self) -> int:
        """Seconds of the first lockout; each further one doubles it, up to ``LOCKOUT_MAX_DURATION``."""
        return _get("LOCKOUT_DURATION", 900)

    @property
    def LOCKOUT_MAX_DURATION(self) -> int:
        """Upper bound of one lockout in seconds (24 hours); lockouts are never permanent."""
        return _get("LOCKOUT_MAX_DURATION", 86400)

    @property
    def NOTIFY_USERS(self) -> bool:
        """Email users about security events (lockout, ...); never with a secret inside."""
        return _get("NOTIFY_USERS", True)

    @property
    def NOTIFY_AFTER_FAILURES(self) -> int:
        """Wrong codes in a row before a right one that make the right one email the user a notice."""
        return _get("NOTIFY_AFTER_FAILURES", 3)

    @property
    def CHALLENGE_RETENTION(self) -> int:
        """Seconds a challenge row is kept after it expires; ``manage.py emailotp_purge`` then deletes it."""
        return _get("CHALLENGE_RETENTION", 86400)

    @property
    def AUDIT_RETENTION_DAYS(self) -> int:
        """Days an audit row is kept before the purge deletes it."""
        return _get("AUDIT_RETENTION_DAYS", 365)

    @property
    def AUDIT_PII_RETENTION_DAYS(self) -> int:
        """Days an audit row keeps its IP address and user agent (at most ``AUDIT_RETENTION_DAYS``)."""
        return _get("AUDIT_PII_RETENTION_DAYS", 90)

    @property
    def BACKUP_CODE_COUNT(self) -> int:
        """Backup codes per set."""
        return _get("BACKUP_CODE_COUNT", 10)

    @property
    def BACKUP_CODE_LENGTH(self) -> int:
        """Crockford base32 characters per backup code (5 bits each: 10 is 50 bits)."""
        return _get("BACKUP_CODE_LENGTH", 10)

    @property
    def BACKUP_CODE_HASHER(self) -> dict[str, int]:
        """argon2id parameters for backup codes (OWASP's minimum: 19 MiB, 2 passes, 1 lane)."""
        return _get("BACKUP_CODE_HASHER", {"time_cost": 2, "memory_cost": 19456, "parallelism": 1})

    @property
    def LOGIN_POLICY(self) -> str:
        """Who is asked for an email code after the password at ``django_emailotp.views.LoginView``: ``"off"``,
        ``"optional"`` (users who turned it on), ``"required"`` (everyone) or ``"required_staff"``."""
        return _get("LOGIN_POLICY", LOGIN_POLICY_OFF)

    @property
    def TRUSTED_DEVICE_DAYS(self) -> int:
        """Days a browser the user chose to remember skips the second factor; 0 turns "remember" off."""
        return _get("TRUSTED_DEVICE_DAYS", 0)

    @property
    def TRUSTED_DEVICE_COOKIE(self) -> str:
        """Name of the signed cookie that marks a remembered browser."""
        return _get("TRUSTED_DEVICE_COOKIE", "emailotp_trusted_device")

    @property
    def ADAPTER(self) -> str:
        """Dotted path of the adapter class (user lookup, account creation, code destination)."""
        return _get("ADAPTER", "django_emailotp.adapter.EmailOTPAdapter")

    @property
    def SIGN_IN_ENABLED(self) -> bool:
        """Passwordless sign-in by code (HTML pages and ``purpose: "sign_in"`` in the API)."""
        return _get("SIGN_IN_ENABLED", False)

    @property
    def API_SIGN_IN_TOKEN(self) -> bool:
        """Answer a successful API sign-in with a DRF token too (needs ``rest_framework.authtoken``)."""
        return _get("API_SIGN_IN_TOKEN", False)


app_settings = AppSettings()
