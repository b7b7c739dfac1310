"""System checks ``emailotp.E0xx`` (errors) and ``emailotp.W0xx`` (warnings). Documented in docs/checks.md."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.urls import NoReverseMatch, reverse

from django_emailotp.check_messages import (
    MAX_BACKUP_CODE_COUNT,
    MAX_BACKUP_CODE_LENGTH,
    MAX_CODE_TTL,
    MAX_DELIVERY_RETRIES,
    MAX_IPV6_PREFIX_LENGTH,
    MAX_LOCKOUT_DURATION,
    MAX_MAX_ATTEMPTS,
    MAX_STEP_UP_MAX_AGE,
    MAX_TRUSTED_DEVICE_DAYS,
    MESSAGES,
    MIN_BACKUP_CODE_LENGTH,
    MIN_BACKUP_CODE_MEMORY_COST,
    MIN_IPV6_PREFIX_LENGTH,
)
from django_emailotp.conf import (
    DELIVERY_CELERY,
    DELIVERY_SYNC,
    DELIVERY_TASKS,
    FALLBACK_NONE,
    FALLBACK_SYNC,
    LOGIN_POLICIES,
    app_settings,
)
from django_emailotp.limits import (
    DEFAULT_RATES,
    SEND_PER_ADDRESS,
    SEND_PER_ADDRESS_DAILY,
    SEND_PER_IP_AND_ADDRESS,
    SEND_PER_IP_AND_ADDRESS_DAILY,
    rate_for,
)
from django_emailotp.purposes import BUILTIN_PURPOSES, PURPOSE_NAME_RE

MIDDLEWARE_PATH = "django_emailotp.middleware.EmailOTPMiddleware"
AUTH_MIDDLEWARE_PATH = "django.contrib.auth.middleware.AuthenticationMiddleware"
CSRF_MIDDLEWARE_PATH = "django.middleware.csrf.CsrfViewMiddleware"

COOKIE_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# django-ratelimit's rate syntax, whole: its own pattern also accepts "5/H" (read as 5 per second) and "5/".
RATE_RE = re.compile(r"^[1-9][0-9]*/([1-9][0-9]*)?[smhd]$")
# Cache backends whose counters are not shared between processes, or not incremented atomically.
UNSUITABLE_CACHES = frozenset(
    {
        "django.core.cache.backends.locmem.LocMemCache",
        "django.core.cache.backends.dummy.DummyCache",
        "django.core.cache.backends.filebased.FileBasedCache",
        "django.core.cache.backends.db.DatabaseCache",
    }
)


def _message(check_id: str, level: type[Error] | type[Warning] = Error) -> CheckMessage:
    text, hint = MESSAGES[check_id]
    return level(text, hint=hint, id=f"emailotp.{check_id}")


def _per_second(rate: str | None) -> float | None:
    """A valid rate string as events per second (None: that limit is off)."""
    if rate is None:
        return None
    count, period = rate.split("/")
    multiplier, unit = period[:-1] or "1", period[-1]
    return int(count) / (int(multiplier) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit])


def _one_requester_reaches_a_ceiling() -> bool:
    """Whether a per-address ceiling is no higher than what one IP may send to the address (both switched on)."""
    pairs = ((SEND_PER_ADDRESS, SEND_PER_IP_AND_ADDRESS), (SEND_PER_ADDRESS_DAILY, SEND_PER_IP_AND_ADDRESS_DAILY))
    for ceiling_name, requester_name in pairs:
        ceiling, requester = _per_second(rate_for(ceiling_name)), _per_second(rate_for(requester_name))
        if ceiling is not None and requester is not None and ceiling <= requester:
            return True
    return False


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _valid_sender(value: Any) -> bool:
    from email.utils import parseaddr

    from django.core.validators import validate_email

    if not isinstance(value, str) or any(ch in value for ch in "\r\n\0"):
        return False
    try:
        validate_email(parseaddr(value)[1])
    except Exception:
        return False
    return True


@register(Tags.security, Tags.compatibility)
def check_settings(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    length = app_settings.CODE_LENGTH
    if not _is_int(length) or not 6 <= length <= 10:
        errors.append(_message("E001"))
    ttl = app_settings.CODE_TTL
    ttl_ok = _is_int(ttl) and 1 <= ttl <= MAX_CODE_TTL
    if not ttl_ok:
        errors.append(_message("E002"))
    attempts = app_settings.MAX_ATTEMPTS
    if not _is_int(attempts) or not 1 <= attempts <= MAX_MAX_ATTEMPTS:
        errors.append(_message("E003"))
    cooldown = app_settings.RESEND_COOLDOWN
    if not _is_int(cooldown) or cooldown < 0 or (ttl_ok and cooldown > ttl):
        errors.append(_message("E004"))
    delivery = app_settings.DELIVERY
    if delivery not in (DELIVERY_CELERY, DELIVERY_TASKS, DELIVERY_SYNC):
        errors.append(_message("E005"))
    elif delivery == DELIVERY_CELERY and importlib.util.find_spec("celery") is None:
        errors.append(_message("E006"))
    elif delivery == DELIVERY_TASKS and not tasks_framework_available():
        errors.append(_message("E038"))
    if not _valid_sender(app_settings.FROM_EMAIL):
        errors.append(_message("E007"))
    errors.extend(_check_site())
    purposes = app_settings.PURPOSES
    if not isinstance(purposes, dict) or not all(
        isinstance(name, str) and PURPOSE_NAME_RE.match(name) and name not in BUILTIN_PURPOSES and label
        for name, label in purposes.items()
    ):
        errors.append(_message("E010"))
    proxies = app_settings.TRUSTED_PROXY_COUNT
    if not _is_int(proxies) or proxies < 0:
        errors.append(_message("E011"))
    prefix = app_settings.IPV6_PREFIX_LENGTH
    if not _is_int(prefix) or not MIN_IPV6_PREFIX_LENGTH <= prefix <= MAX_IPV6_PREFIX_LENGTH:
        errors.append(_message("E042"))
    retries = app_settings.DELIVERY_MAX_RETRIES
    if not _is_int(retries) or not 0 <= retries <= MAX_DELIVERY_RETRIES:
        errors.append(_message("E012"))
    base, ceiling = app_settings.DELIVERY_RETRY_BACKOFF, app_settings.DELIVERY_RETRY_BACKOFF_MAX
    if not (_is_number(base) and _is_number(ceiling) and 0 < base <= ceiling):
        errors.append(_message("E013"))
    if app_settings.DELIVERY_FALLBACK not in (FALLBACK_NONE, FALLBACK_SYNC):
        errors.append(_message("E014"))
    if not isinstance(app_settings.BROKER_RETRY_POLICY, dict):
        errors.append(_message("E015"))
    queue = app_settings.CELERY_QUEUE
    if queue is not None and (not isinstance(queue, str) or not queue):
        errors.append(_message("E016"))
    lease = app_settings.DELIVERY_LEASE
    if not _is_int(lease) or lease < 1 or (ttl_ok and lease >= ttl):
        errors.append(_message("E039"))
    tasks_queue = app_settings.TASKS_QUEUE
    if tasks_queue is not None and (not isinstance(tasks_queue, str) or not tasks_queue):
        errors.append(_message("E040"))
    errors.extend(_check_step_up())
    return errors


def tasks_framework_available() -> bool:
    """``django.tasks`` (Django 6.0+) or the ``django-tasks`` backport can be imported."""
    return any(importlib.util.find_spec(name) is not None for name in ("django.tasks", "django_tasks"))


def _valid_patterns(patterns: Any) -> bool:
    if not isinstance(patterns, list | tuple) or not all(isinstance(p, str) and p.lstrip("!") for p in patterns):
        return False
    try:
        for pattern in patterns:
            if pattern.lstrip("!").startswith("^"):
                re.compile(pattern.lstrip("!"))
    except re.error:
        return False
    return True


def _check_step_up() -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    max_age = app_settings.STEP_UP_MAX_AGE
    if not _is_int(max_age) or not 1 <= max_age <= MAX_STEP_UP_MAX_AGE:
        errors.append(_message("E017"))
    if not isinstance(app_settings.STEP_UP_SLIDING, bool) or not isinstance(app_settings.STEP_UP_REPLAY, bool):
        errors.append(_message("E018"))
    patterns = app_settings.PROTECTED_URLS
    if not _valid_patterns(patterns):
        errors.append(_message("E019"))
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    if MIDDLEWARE_PATH in middleware:
        auth_index = middleware.index(AUTH_MIDDLEWARE_PATH) if AUTH_MIDDLEWARE_PATH in middleware else None
        if auth_index is None or middleware.index(MIDDLEWARE_PATH) < auth_index:
            errors.append(_message("E020"))
        try:
            reverse("emailotp:verify")
        except NoReverseMatch:
            errors.append(_message("W005", Warning))
    elif patterns:
        errors.append(_message("E041"))
    return errors


def _check_site() -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    url = getattr(settings, "EMAIL_OTP_SITE_URL", None)
    if url is None:
        errors.append(_message("W001", Warning))
    else:
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            errors.append(_message("E008"))
        elif parts.scheme == "http" and not settings.DEBUG:
            errors.append(_message("W002", Warning))
    name = getattr(settings, "EMAIL_OTP_SITE_NAME", None)
    if name is None:
        errors.append(_message("W003", Warning))
    elif not isinstance(name, str):
        errors.append(_message("E009"))
    return errors


@register(Tags.security, Tags.caches)
def check_abuse_controls(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """The CSRF check before kept POSTs; rate limits, lockouts and the cache their counters live in."""
    errors: list[CheckMessage] = []
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    # Only once the middleware sits where E020 wants it, so one misplacement is reported once.
    if MIDDLEWARE_PATH in middleware and AUTH_MIDDLEWARE_PATH in middleware:
        position = middleware.index(MIDDLEWARE_PATH)
        csrf = middleware.index(CSRF_MIDDLEWARE_PATH) if CSRF_MIDDLEWARE_PATH in middleware else None
        if position > middleware.index(AUTH_MIDDLEWARE_PATH) and (csrf is None or position < csrf):
            errors.append(_message("E021"))
    rates = app_settings.RATES
    if not isinstance(rates, dict) or not all(
        name in DEFAULT_RATES and (rate is None or (isinstance(rate, str) and RATE_RE.match(rate)))
        for name, rate in rates.items()
    ):
        errors.append(_message("E022"))
    elif _one_requester_reaches_a_ceiling():
        errors.append(_message("W013", Warning))
    threshold = app_settings.LOCKOUT_THRESHOLD
    duration, ceiling = app_settings.LOCKOUT_DURATION, app_settings.LOCKOUT_MAX_DURATION
    if not (
        all(_is_int(value) for value in (threshold, duration, ceiling))
        and threshold >= 1
        and 1 <= duration <= ceiling <= MAX_LOCKOUT_DURATION
    ):
        errors.append(_message("E023"))
    cache = (getattr(settings, "CACHES", None) or {}).get(getattr(settings, "RATELIMIT_USE_CACHE", "default"))
    if not isinstance(cache, dict):
        errors.append(_message("E024"))
    elif cache.get("BACKEND") in UNSUITABLE_CACHES:
        errors.append(_message("W006", Warning) if settings.DEBUG else _message("E024"))
    return errors


@register(Tags.security)
def check_retention(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """The retention periods ``services.purge`` applies."""
    challenges = app_settings.CHALLENGE_RETENTION
    audit_days, pii_days = app_settings.AUDIT_RETENTION_DAYS, app_settings.AUDIT_PII_RETENTION_DAYS
    whole = all(_is_int(value) for value in (challenges, audit_days, pii_days))
    if not (whole and challenges >= 0 and pii_days >= 0 and audit_days >= 1):
        return [_message("E025")]
    if pii_days > audit_days:
        return [_message("E026")]
    return []


@register(Tags.security)
def check_login(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """The second factor at login and "remember this browser"."""
    errors: list[CheckMessage] = []
    if app_settings.LOGIN_POLICY not in LOGIN_POLICIES:
        errors.append(_message("E027"))
    days = app_settings.TRUSTED_DEVICE_DAYS
    if not _is_int(days) or not 0 <= days <= MAX_TRUSTED_DEVICE_DAYS:
        errors.append(_message("E028"))
    cookie = app_settings.TRUSTED_DEVICE_COOKIE
    taken = {settings.SESSION_COOKIE_NAME, settings.CSRF_COOKIE_NAME, settings.LANGUAGE_COOKIE_NAME}
    if not isinstance(cookie, str) or not COOKIE_NAME_RE.match(cookie) or cookie in taken:
        errors.append(_message("E029"))
    return errors


@register(Tags.security)
def check_sign_in(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """The adapter, passwordless sign-in and the API's sign-in token."""
    from django.apps import apps
    from django.utils.module_loading import import_string

    from django_emailotp.adapter import EmailOTPAdapter

    errors: list[CheckMessage] = []
    path = app_settings.ADAPTER
    try:
        adapter = import_string(path) if isinstance(path, str) else None
    except ImportError:
        adapter = None
    if not (isinstance(adapter, type) and issubclass(adapter, EmailOTPAdapter)):
        errors.append(_message("E030"))
    token = app_settings.API_SIGN_IN_TOKEN
    if not isinstance(app_settings.SIGN_IN_ENABLED, bool) or not isinstance(token, bool):
        errors.append(_message("E031"))
    elif token and not apps.is_installed("rest_framework.authtoken"):
        errors.append(_message("E032"))
    return errors


@register(Tags.security)
def check_backup_codes(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """How many backup codes, how long, and what argon2id costs to hash them."""
    errors: list[CheckMessage] = []
    count = app_settings.BACKUP_CODE_COUNT
    if not _is_int(count) or not 1 <= count <= MAX_BACKUP_CODE_COUNT:
        errors.append(_message("E033"))
    length = app_settings.BACKUP_CODE_LENGTH
    if not _is_int(length) or not MIN_BACKUP_CODE_LENGTH <= length <= MAX_BACKUP_CODE_LENGTH:
        errors.append(_message("E034"))
    hasher = app_settings.BACKUP_CODE_HASHER
    minimums = {"time_cost": 1, "memory_cost": MIN_BACKUP_CODE_MEMORY_COST, "parallelism": 1}
    if not (
        isinstance(hasher, dict)
        and set(hasher) == set(minimums)
        and all(_is_int(hasher[name]) and hasher[name] >= least for name, least in minimums.items())
    ):
        errors.append(_message("E035"))
    return errors


@register(Tags.security)
def check_notices(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """Security notices emailed to users (services/notices.py)."""
    errors: list[CheckMessage] = []
    if not isinstance(app_settings.NOTIFY_USERS, bool):
        errors.append(_message("E036"))
    after = app_settings.NOTIFY_AFTER_FAILURES
    if not _is_int(after) or after < 1:
        errors.append(_message("E037"))
    return errors


@register(Tags.security, deploy=True)
def check_django_security(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """Django's cookie and HSTS settings (SECURITY.md rule 16), with why each matters for one-time codes.

    Deploy checks, like Django's own: they run under ``manage.py check --deploy``, not on every ``runserver``.
    """
    errors: list[CheckMessage] = []
    if not settings.SESSION_COOKIE_SECURE:
        errors.append(_message("W007", Warning))
    if not settings.CSRF_COOKIE_SECURE:
        errors.append(_message("W008", Warning))
    samesite = settings.SESSION_COOKIE_SAMESITE
    if samesite is None or str(samesite).lower() == "none":
        errors.append(_message("W009", Warning))
    if not settings.SECURE_HSTS_SECONDS:  # Django's default, 0, is "not set"
        errors.append(_message("W010", Warning))
    return errors
