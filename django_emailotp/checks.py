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

from django_emailotp.conf import (
    DELIVERY_CELERY,
    DELIVERY_SYNC,
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

MAX_CODE_TTL = 600
MAX_MAX_ATTEMPTS = 10
MAX_DELIVERY_RETRIES = 20
MAX_STEP_UP_MAX_AGE = 12 * 60 * 60
MIDDLEWARE_PATH = "django_emailotp.middleware.EmailOTPMiddleware"
AUTH_MIDDLEWARE_PATH = "django.contrib.auth.middleware.AuthenticationMiddleware"
CSRF_MIDDLEWARE_PATH = "django.middleware.csrf.CsrfViewMiddleware"
MAX_LOCKOUT_DURATION = 7 * 24 * 60 * 60
MAX_BACKUP_CODE_COUNT = 50
MIN_BACKUP_CODE_LENGTH = 10  # 50 bits
MAX_BACKUP_CODE_LENGTH = 32
MIN_BACKUP_CODE_MEMORY_COST = 8192  # KiB
MAX_TRUSTED_DEVICE_DAYS = 400
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

# Every message and hint in one place: id -> (message, hint).
MESSAGES: dict[str, tuple[str, str]] = {
    "E001": (
        "EMAIL_OTP_CODE_LENGTH must be a whole number from 6 to 10.",
        "Codes shorter than 6 digits can be guessed; set EMAIL_OTP_CODE_LENGTH = 6 (the default) or more.",
    ),
    "E002": (
        f"EMAIL_OTP_CODE_TTL must be a whole number of seconds from 1 to {MAX_CODE_TTL}.",
        "A long-lived code gives an attacker more time; the default is 300 seconds.",
    ),
    "E003": (
        f"EMAIL_OTP_MAX_ATTEMPTS must be a whole number from 1 to {MAX_MAX_ATTEMPTS}.",
        "Each wrong guess is a chance to hit the code; the default is 5.",
    ),
    "E004": (
        "EMAIL_OTP_RESEND_COOLDOWN must be a whole number of seconds from 0 to EMAIL_OTP_CODE_TTL.",
        "The default is 60 seconds.",
    ),
    "E005": (
        'EMAIL_OTP_DELIVERY must be "celery" or "sync".',
        'Use "celery" to queue emails, or "sync" to send them in-process after the transaction commits.',
    ),
    "E006": (
        'EMAIL_OTP_DELIVERY is "celery" but Celery is not installed.',
        "pip install 'django-emailotp[celery]', or set EMAIL_OTP_DELIVERY = \"sync\".",
    ),
    "E007": (
        "EMAIL_OTP_FROM_EMAIL (or DEFAULT_FROM_EMAIL) is not a valid sender address.",
        'Use "name@example.com" or "Example <name@example.com>" without line breaks.',
    ),
    "E008": (
        "EMAIL_OTP_SITE_URL must be an absolute http(s) URL such as https://example.com.",
        "Links in emails are built from this setting, never from the request's Host header.",
    ),
    "E009": (
        "EMAIL_OTP_SITE_NAME must be a string.",
        'Set it to the name your users know, e.g. EMAIL_OTP_SITE_NAME = "Example".',
    ),
    "E010": (
        "EMAIL_OTP_PURPOSES must map purpose names (lower-case letters, digits, underscores) to labels.",
        'For example EMAIL_OTP_PURPOSES = {"payout": "confirm a payout"}; built-in names cannot be redefined.',
    ),
    "E011": (
        "EMAIL_OTP_TRUSTED_PROXY_COUNT must be a whole number, 0 or more.",
        "Set it to the number of reverse proxies in front of Django that append to X-Forwarded-For.",
    ),
    "E012": (
        f"EMAIL_OTP_DELIVERY_MAX_RETRIES must be a whole number from 0 to {MAX_DELIVERY_RETRIES}.",
        "The default is 5.",
    ),
    "E013": (
        "EMAIL_OTP_DELIVERY_RETRY_BACKOFF and EMAIL_OTP_DELIVERY_RETRY_BACKOFF_MAX must be positive numbers, "
        "the maximum not below the base.",
        "The defaults are 2 and 60 seconds.",
    ),
    "E014": (
        'EMAIL_OTP_DELIVERY_FALLBACK must be "none" or "sync".',
        '"none" raises DeliveryUnavailable when the broker is down; "sync" sends in-process instead.',
    ),
    "E015": (
        "EMAIL_OTP_BROKER_RETRY_POLICY must be a dict of kombu retry options.",
        'For example {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}.',
    ),
    "E016": (
        "EMAIL_OTP_CELERY_QUEUE must be a queue name or None.",
        "Leave it unset to use Celery's default routing.",
    ),
    "E017": (
        f"EMAIL_OTP_STEP_UP_MAX_AGE must be a whole number of seconds from 1 to {MAX_STEP_UP_MAX_AGE} (12 hours).",
        "The default is 300 seconds; sensitive actions want a short window.",
    ),
    "E018": (
        "EMAIL_OTP_STEP_UP_SLIDING and EMAIL_OTP_STEP_UP_REPLAY must be True or False.",
        "Both are booleans.",
    ),
    "E019": (
        'EMAIL_OTP_PROTECTED_URLS must be a list of URL names ("admin:*") or path regexes ("^/settings/").',
        "Names may use * wildcards; regexes start with ^ and must compile; a leading ! exempts.",
    ),
    "E020": (
        "EmailOTPMiddleware must come after AuthenticationMiddleware in MIDDLEWARE.",
        "Move django_emailotp.middleware.EmailOTPMiddleware below "
        "django.contrib.auth.middleware.AuthenticationMiddleware.",
    ),
    "E021": (
        "EmailOTPMiddleware must come after CsrfViewMiddleware in MIDDLEWARE.",
        "A POST kept for re-submission after step-up must have passed the CSRF check first: put "
        "django.middleware.csrf.CsrfViewMiddleware above django_emailotp.middleware.EmailOTPMiddleware.",
    ),
    "E022": (
        "EMAIL_OTP_RATES must map limit names (" + ", ".join(DEFAULT_RATES) + ") to rates or None.",
        'A rate is "<count>/<period>" with the period s, m, h or d and an optional multiplier: "5/h", "20/d", '
        '"10/5m". None switches that limit off.',
    ),
    "E023": (
        "EMAIL_OTP_LOCKOUT_THRESHOLD, EMAIL_OTP_LOCKOUT_DURATION and EMAIL_OTP_LOCKOUT_MAX_DURATION must be "
        "whole numbers of at least 1, the maximum duration from EMAIL_OTP_LOCKOUT_DURATION to 7 days.",
        "A lockout must always end, so the owner cannot be locked out for good; the defaults are 10 wrong codes, "
        "900 seconds and 86400 seconds.",
    ),
    "E024": (
        "The rate-limit cache (RATELIMIT_USE_CACHE) must exist in CACHES and be shared between processes with "
        "atomic increments; LocMem, Dummy, FileBased and Database caches are not.",
        "Use Redis (django.core.cache.backends.redis.RedisCache) or Memcached for the cache RATELIMIT_USE_CACHE "
        'names (default "default"), or counters are per process, lost, or racy.',
    ),
    "W006": (
        "The rate-limit cache (RATELIMIT_USE_CACHE) is not shared between processes or not atomic; "
        "fine for runserver, not for production.",
        "Use Redis (django.core.cache.backends.redis.RedisCache) or Memcached before turning DEBUG off.",
    ),
    "W011": (
        "EMAIL_OTP_RATES let one requester reach an address's ceiling: send_per_address (or send_per_address_daily) "
        "allows no more than send_per_ip_and_address (or send_per_ip_and_address_daily).",
        "The per-address ceiling counts every anonymous requester of an address; when one IP can reach it, that IP "
        "can silence the address's sign-in codes for everyone else. Keep each ceiling above the matching "
        'per-IP-and-address rate (the defaults are "10/h" over "5/h" and "30/d" over "10/d").',
    ),
    "W004": (
        "EMAIL_OTP_PROTECTED_URLS is set but EmailOTPMiddleware is not in MIDDLEWARE, so nothing is protected.",
        "Add django_emailotp.middleware.EmailOTPMiddleware after AuthenticationMiddleware.",
    ),
    "W005": (
        "EmailOTPMiddleware is installed but the step-up pages are not in the URLconf.",
        'Add path("otp/", include("django_emailotp.urls")) to your urlpatterns.',
    ),
    "W001": (
        "EMAIL_OTP_SITE_URL is not set.",
        "Set it to your site's public URL (https://example.com) so code emails can name and link your site.",
    ),
    "W002": (
        "EMAIL_OTP_SITE_URL uses http:// outside DEBUG.",
        "Use https:// so links in emails are not open to tampering.",
    ),
    "W003": (
        "EMAIL_OTP_SITE_NAME is not set; emails use the host of EMAIL_OTP_SITE_URL.",
        "Set EMAIL_OTP_SITE_NAME to the name your users know.",
    ),
    "E025": (
        "EMAIL_OTP_CHALLENGE_RETENTION (seconds) and EMAIL_OTP_AUDIT_PII_RETENTION_DAYS must be whole numbers, "
        "0 or more; EMAIL_OTP_AUDIT_RETENTION_DAYS a whole number of at least 1.",
        "The defaults are 86400 seconds, 90 days and 365 days (manage.py emailotp_purge applies them).",
    ),
    "E026": (
        "EMAIL_OTP_AUDIT_PII_RETENTION_DAYS must not exceed EMAIL_OTP_AUDIT_RETENTION_DAYS.",
        "IP addresses and user agents are removed before the audit row itself; the defaults are 90 and 365 days.",
    ),
    "E027": (
        'EMAIL_OTP_LOGIN_POLICY must be "off", "optional", "required" or "required_staff".',
        '"optional" lets each user turn the second factor on; "required_staff" asks staff and superusers only.',
    ),
    "E028": (
        f"EMAIL_OTP_TRUSTED_DEVICE_DAYS must be a whole number of days from 0 to {MAX_TRUSTED_DEVICE_DAYS}.",
        '0 (the default) turns "remember this browser" off; browsers keep a cookie at most 400 days.',
    ),
    "E029": (
        "EMAIL_OTP_TRUSTED_DEVICE_COOKIE must be a cookie name (letters, digits, - and _) that no other cookie "
        "(SESSION_COOKIE_NAME, CSRF_COOKIE_NAME, LANGUAGE_COOKIE_NAME) uses.",
        'The default is "emailotp_trusted_device".',
    ),
    "E030": (
        "EMAIL_OTP_ADAPTER must be the dotted path of a subclass of django_emailotp.adapter.EmailOTPAdapter.",
        'Point it at your adapter class, e.g. "myproject.otp.Adapter", or leave it unset for the default.',
    ),
    "E031": (
        "EMAIL_OTP_SIGN_IN_ENABLED and EMAIL_OTP_API_SIGN_IN_TOKEN must be True or False.",
        "Both are booleans and default to False.",
    ),
    "E032": (
        "EMAIL_OTP_API_SIGN_IN_TOKEN is True but rest_framework.authtoken is not in INSTALLED_APPS.",
        'Add "rest_framework.authtoken" to INSTALLED_APPS (and migrate), or set EMAIL_OTP_API_SIGN_IN_TOKEN = False.',
    ),
    "E033": (
        f"EMAIL_OTP_BACKUP_CODE_COUNT must be a whole number from 1 to {MAX_BACKUP_CODE_COUNT}.",
        "The default is 10 codes per set.",
    ),
    "E034": (
        f"EMAIL_OTP_BACKUP_CODE_LENGTH must be a whole number from {MIN_BACKUP_CODE_LENGTH} to "
        f"{MAX_BACKUP_CODE_LENGTH} characters.",
        "Each Crockford base32 character is 5 bits: the default of 10 characters is 50 bits, the least that is "
        "safe for a long-lived secret.",
    ),
    "E035": (
        "EMAIL_OTP_BACKUP_CODE_HASHER must be a dict of argon2id parameters: whole numbers time_cost (at least 1), "
        f"memory_cost (KiB, at least {MIN_BACKUP_CODE_MEMORY_COST}) and parallelism (at least 1).",
        'The default is OWASP\'s minimum for argon2id: {"time_cost": 2, "memory_cost": 19456, "parallelism": 1}.',
    ),
    "E036": (
        "EMAIL_OTP_NOTIFY_USERS must be True or False.",
        "It is a boolean and defaults to True: users are emailed (never with a code inside) about lockouts, "
        "backup codes, second-factor changes, email changes and codes that succeed after several wrong ones.",
    ),
    "E037": (
        "EMAIL_OTP_NOTIFY_AFTER_FAILURES must be a whole number of at least 1.",
        "The default is 3: a right code that follows 3 or more wrong codes in a row emails the user a notice. "
        "To send no notices at all, set EMAIL_OTP_NOTIFY_USERS = False.",
    ),
    # Deploy checks (manage.py check --deploy): Django's own settings that one-time codes lean on.
    "W007": (
        "SESSION_COOKIE_SECURE is False, so the session cookie is also sent over plain HTTP.",
        "Set SESSION_COOKIE_SECURE = True. A code is bound to the session that asked for it and step-up grants "
        "belong to a session: whoever reads the cookie off an unencrypted connection gets both.",
    ),
    "W008": (
        "CSRF_COOKIE_SECURE is False, so the CSRF cookie is also sent over plain HTTP.",
        "Set CSRF_COOKIE_SECURE = True. Sending and checking codes are CSRF-protected POSTs; a CSRF token read off "
        "plain HTTP lets another site send them in the user's name.",
    ),
    "W009": (
        'SESSION_COOKIE_SAMESITE is None (or "None"), so browsers send the session cookie on cross-site requests.',
        'Set SESSION_COOKIE_SAMESITE = "Lax" (Django\'s default) or "Strict". A cross-site session cookie lets '
        "another site's requests ride on a session that holds a code binding or a fresh step-up grant, with CSRF "
        "protection as the only defence left.",
    ),
    "W010": (
        "SECURE_HSTS_SECONDS is not set, so browsers may still reach the site over plain HTTP.",
        "Serve the site over HTTPS and set SECURE_HSTS_SECONDS (try 3600, then 31536000). Without HSTS a first "
        "request over HTTP can be intercepted, and with it the session that carries code bindings and step-up "
        "grants.",
    ),
}


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
    if delivery not in (DELIVERY_CELERY, DELIVERY_SYNC):
        errors.append(_message("E005"))
    elif delivery == DELIVERY_CELERY and importlib.util.find_spec("celery") is None:
        errors.append(_message("E006"))
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
    errors.extend(_check_step_up())
    return errors


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
        errors.append(_message("W004", Warning))
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
        errors.append(_message("W011", Warning))
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
