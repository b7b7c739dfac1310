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
    app_settings,
)
from django_emailotp.purposes import BUILTIN_PURPOSES, PURPOSE_NAME_RE

MAX_CODE_TTL = 600
MAX_MAX_ATTEMPTS = 10
MAX_DELIVERY_RETRIES = 20
MAX_STEP_UP_MAX_AGE = 12 * 60 * 60
MIDDLEWARE_PATH = "django_emailotp.middleware.EmailOTPMiddleware"
AUTH_MIDDLEWARE_PATH = "django.contrib.auth.middleware.AuthenticationMiddleware"

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
}


def _message(check_id: str, level: type[Error] | type[Warning] = Error) -> CheckMessage:
    text, hint = MESSAGES[check_id]
    return level(text, hint=hint, id=f"emailotp.{check_id}")


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
