"""System checks emailotp.E0xx / W0xx: each fires on a bad value, none fires on good ones, and they are registered."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import django
import pytest
from django.conf import settings
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings
from rest_framework.authentication import BasicAuthentication

from django_emailotp import project_checks
from django_emailotp.checks import MESSAGES, UNSUITABLE_CACHES, check_settings
from django_emailotp.limits import DEFAULT_RATES

UNSET = object()
OTP_MIDDLEWARE = "django_emailotp.middleware.EmailOTPMiddleware"
OTHER_MIDDLEWARE = [name for name in settings.MIDDLEWARE if name != OTP_MIDDLEWARE]
# A URLconf without the step-up pages (W005), this module's own.
urlpatterns: list[Any] = []

CSRF_MIDDLEWARE = "django.middleware.csrf.CsrfViewMiddleware"
WITHOUT_CSRF = [name for name in settings.MIDDLEWARE if name != CSRF_MIDDLEWARE]
# Never written: the checks only build the cache objects (FileBasedCache wants an absolute LOCATION).
CACHE_DIR = str(Path(__file__).resolve().parent / "never-written-cache")
LOCMEM_CACHE = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
WITHOUT_AUTHTOKEN = [name for name in settings.INSTALLED_APPS if name != "rest_framework.authtoken"]
BASIC_AUTH = "rest_framework.authentication.BasicAuthentication"
SESSION_AUTH = "rest_framework.authentication.SessionAuthentication"
TOKEN_AUTH = "rest_framework.authentication.TokenAuthentication"
REDIS_CACHE = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:6379/9"}


class CompanyBasicAuthentication(BasicAuthentication):
    """A project's own HTTP Basic: still Basic."""


# (check id, settings that must trigger it). The other settings stay at the test settings' values.
BAD: list[tuple[str, dict[str, Any]]] = [
    ("E001", {"EMAIL_OTP_CODE_LENGTH": 5}),
    ("E001", {"EMAIL_OTP_CODE_LENGTH": 11}),
    ("E001", {"EMAIL_OTP_CODE_LENGTH": "6"}),
    ("E001", {"EMAIL_OTP_CODE_LENGTH": True}),
    ("E002", {"EMAIL_OTP_CODE_TTL": 0}),
    ("E002", {"EMAIL_OTP_CODE_TTL": 601}),
    ("E002", {"EMAIL_OTP_CODE_TTL": 300.0}),
    ("E003", {"EMAIL_OTP_MAX_ATTEMPTS": 0}),
    ("E003", {"EMAIL_OTP_MAX_ATTEMPTS": 11}),
    ("E003", {"EMAIL_OTP_MAX_ATTEMPTS": None}),
    ("E004", {"EMAIL_OTP_RESEND_COOLDOWN": -1}),
    ("E004", {"EMAIL_OTP_RESEND_COOLDOWN": 301}),
    ("E004", {"EMAIL_OTP_RESEND_COOLDOWN": "60"}),
    ("E005", {"EMAIL_OTP_DELIVERY": "smtp"}),
    ("E005", {"EMAIL_OTP_DELIVERY": None}),
    ("E007", {"EMAIL_OTP_FROM_EMAIL": "not an address"}),
    ("E007", {"EMAIL_OTP_FROM_EMAIL": "otp@example.com\r\nBcc: victim@example.com"}),
    ("E007", {"DEFAULT_FROM_EMAIL": "webmaster@localhost\n"}),
    ("E008", {"EMAIL_OTP_SITE_URL": "example.com"}),
    ("E008", {"EMAIL_OTP_SITE_URL": "ftp://example.com"}),
    ("E008", {"EMAIL_OTP_SITE_URL": "https://"}),
    ("E008", {"EMAIL_OTP_SITE_URL": 42}),
    ("E009", {"EMAIL_OTP_SITE_NAME": 42}),
    ("E010", {"EMAIL_OTP_PURPOSES": {"Pay Out": "confirm a payout"}}),
    ("E010", {"EMAIL_OTP_PURPOSES": {"login": "log in differently"}}),
    ("E010", {"EMAIL_OTP_PURPOSES": {"payout": ""}}),
    ("E010", {"EMAIL_OTP_PURPOSES": ["payout"]}),
    ("E011", {"EMAIL_OTP_TRUSTED_PROXY_COUNT": -1}),
    ("E011", {"EMAIL_OTP_TRUSTED_PROXY_COUNT": "1"}),
    ("E042", {"EMAIL_OTP_IPV6_PREFIX_LENGTH": 31}),  # wider than a provider's allocation
    ("E042", {"EMAIL_OTP_IPV6_PREFIX_LENGTH": 129}),
    ("E042", {"EMAIL_OTP_IPV6_PREFIX_LENGTH": 0}),
    ("E042", {"EMAIL_OTP_IPV6_PREFIX_LENGTH": "64"}),
    ("E042", {"EMAIL_OTP_IPV6_PREFIX_LENGTH": 64.0}),
    ("E042", {"EMAIL_OTP_IPV6_PREFIX_LENGTH": True}),
    ("E012", {"EMAIL_OTP_DELIVERY_MAX_RETRIES": -1}),
    ("E012", {"EMAIL_OTP_DELIVERY_MAX_RETRIES": 21}),
    ("E013", {"EMAIL_OTP_DELIVERY_RETRY_BACKOFF": 0}),
    ("E013", {"EMAIL_OTP_DELIVERY_RETRY_BACKOFF": 10, "EMAIL_OTP_DELIVERY_RETRY_BACKOFF_MAX": 5}),
    ("E013", {"EMAIL_OTP_DELIVERY_RETRY_BACKOFF_MAX": "60"}),
    ("E014", {"EMAIL_OTP_DELIVERY_FALLBACK": "queue"}),
    ("E015", {"EMAIL_OTP_BROKER_RETRY_POLICY": [("max_retries", 1)]}),
    ("E016", {"EMAIL_OTP_CELERY_QUEUE": ""}),
    ("E016", {"EMAIL_OTP_CELERY_QUEUE": 5}),
    ("E039", {"EMAIL_OTP_DELIVERY_LEASE": 0}),
    ("E039", {"EMAIL_OTP_DELIVERY_LEASE": 300}),
    ("E039", {"EMAIL_OTP_DELIVERY_LEASE": 30.5}),
    ("E040", {"EMAIL_OTP_TASKS_QUEUE": ""}),
    ("E040", {"EMAIL_OTP_TASKS_QUEUE": ["emailotp"]}),
    ("E017", {"EMAIL_OTP_STEP_UP_MAX_AGE": 0}),
    ("E017", {"EMAIL_OTP_STEP_UP_MAX_AGE": 12 * 3600 + 1}),
    ("E018", {"EMAIL_OTP_STEP_UP_SLIDING": "yes"}),
    ("E018", {"EMAIL_OTP_STEP_UP_REPLAY": 1}),
    ("E019", {"EMAIL_OTP_PROTECTED_URLS": "admin:*"}),
    ("E019", {"EMAIL_OTP_PROTECTED_URLS": ["^/settings/("]}),
    ("E019", {"EMAIL_OTP_PROTECTED_URLS": ["!"]}),
    ("E019", {"EMAIL_OTP_PROTECTED_URLS": [5]}),
    ("E020", {"MIDDLEWARE": [*OTHER_MIDDLEWARE[:1], OTP_MIDDLEWARE, *OTHER_MIDDLEWARE[1:]]}),
    ("W001", {"EMAIL_OTP_SITE_URL": UNSET}),
    ("W002", {"EMAIL_OTP_SITE_URL": "http://example.com", "DEBUG": False}),
    ("W003", {"EMAIL_OTP_SITE_NAME": UNSET}),
    ("E041", {"MIDDLEWARE": OTHER_MIDDLEWARE, "EMAIL_OTP_PROTECTED_URLS": ["admin:*"], "ROOT_URLCONF": __name__}),
    ("W011", {"MIDDLEWARE": OTHER_MIDDLEWARE, "EMAIL_OTP_PROTECTED_URLS": []}),  # the example site marks views
    ("W005", {"ROOT_URLCONF": __name__}),
    ("W012", {"REST_FRAMEWORK": {"DEFAULT_AUTHENTICATION_CLASSES": [SESSION_AUTH, BASIC_AUTH]}}),
    ("W012", {"REST_FRAMEWORK": {}}),  # DRF's own default is Session and Basic
    ("W012", {"REST_FRAMEWORK": {"DEFAULT_AUTHENTICATION_CLASSES": ["tests.test_checks.CompanyBasicAuthentication"]}}),
    ("E021", {"MIDDLEWARE": [*WITHOUT_CSRF, CSRF_MIDDLEWARE]}),
    ("E021", {"MIDDLEWARE": WITHOUT_CSRF}),
    ("E022", {"EMAIL_OTP_RATES": {"send_per_hour": "5/h"}}),
    ("E022", {"EMAIL_OTP_RATES": {"send_per_user": "5/H"}}),  # django-ratelimit would read 5 per second
    ("E022", {"EMAIL_OTP_RATES": {"send_per_user": "5"}}),
    ("E022", {"EMAIL_OTP_RATES": {"send_per_user": "0/h"}}),
    ("E022", {"EMAIL_OTP_RATES": {"send_per_user": "5/0m"}}),
    ("E022", {"EMAIL_OTP_RATES": {"send_per_user": 5}}),
    ("E022", {"EMAIL_OTP_RATES": [("send_per_user", "5/h")]}),
    ("E022", {"EMAIL_OTP_RATES": {"send_per_new_address_daily": "5/D"}}),
    ("W013", {"EMAIL_OTP_RATES": {"send_per_address": "5/h"}}),
    ("W013", {"EMAIL_OTP_RATES": {"send_per_address_daily": "240/d", "send_per_ip_and_address_daily": "10/h"}}),
    ("E023", {"EMAIL_OTP_LOCKOUT_THRESHOLD": 0}),
    ("E023", {"EMAIL_OTP_LOCKOUT_THRESHOLD": "10"}),
    ("E023", {"EMAIL_OTP_LOCKOUT_DURATION": 0}),
    ("E023", {"EMAIL_OTP_LOCKOUT_DURATION": 900.0}),
    ("E023", {"EMAIL_OTP_LOCKOUT_DURATION": 3600, "EMAIL_OTP_LOCKOUT_MAX_DURATION": 900}),
    ("E023", {"EMAIL_OTP_LOCKOUT_MAX_DURATION": 7 * 86400 + 1}),
    ("E023", {"EMAIL_OTP_LOCKOUT_MAX_DURATION": None}),
    *[
        (
            "E024",
            {
                "CACHES": {"default": {"BACKEND": backend, "LOCATION": CACHE_DIR}},
                "DEBUG": False,
                "SILENCED_SYSTEM_CHECKS": [],
            },
        )
        for backend in sorted(UNSUITABLE_CACHES)
    ],
    ("E024", {"RATELIMIT_USE_CACHE": "ratelimit", "SILENCED_SYSTEM_CHECKS": []}),  # not in CACHES
    (
        "E024",
        {
            "RATELIMIT_USE_CACHE": "ratelimit",
            "CACHES": {"default": REDIS_CACHE, "ratelimit": LOCMEM_CACHE},
            "DEBUG": False,
            "SILENCED_SYSTEM_CHECKS": [],
        },
    ),
    ("W006", {"CACHES": {"default": LOCMEM_CACHE}, "DEBUG": True, "SILENCED_SYSTEM_CHECKS": []}),
    ("E025", {"EMAIL_OTP_CHALLENGE_RETENTION": -1}),
    ("E025", {"EMAIL_OTP_CHALLENGE_RETENTION": 86400.0}),
    ("E025", {"EMAIL_OTP_AUDIT_RETENTION_DAYS": 0, "EMAIL_OTP_AUDIT_PII_RETENTION_DAYS": 0}),
    ("E025", {"EMAIL_OTP_AUDIT_RETENTION_DAYS": "365"}),
    ("E025", {"EMAIL_OTP_AUDIT_PII_RETENTION_DAYS": -1}),
    ("E025", {"EMAIL_OTP_AUDIT_PII_RETENTION_DAYS": None}),
    ("E026", {"EMAIL_OTP_AUDIT_PII_RETENTION_DAYS": 366}),
    ("E026", {"EMAIL_OTP_AUDIT_RETENTION_DAYS": 30}),
    ("E030", {"EMAIL_OTP_ADAPTER": "django_emailotp.adapter.NoSuchAdapter"}),
    ("E030", {"EMAIL_OTP_ADAPTER": "not a dotted path"}),
    ("E030", {"EMAIL_OTP_ADAPTER": "django_emailotp.services.issue_challenge"}),  # importable, not an adapter
    ("E030", {"EMAIL_OTP_ADAPTER": None}),
    ("E031", {"EMAIL_OTP_SIGN_IN_ENABLED": "yes"}),
    ("E031", {"EMAIL_OTP_API_SIGN_IN_TOKEN": 1}),
    ("E032", {"EMAIL_OTP_API_SIGN_IN_TOKEN": True, "INSTALLED_APPS": WITHOUT_AUTHTOKEN}),
    ("E027", {"EMAIL_OTP_LOGIN_POLICY": "on"}),
    ("E027", {"EMAIL_OTP_LOGIN_POLICY": None}),
    ("E028", {"EMAIL_OTP_TRUSTED_DEVICE_DAYS": -1}),
    ("E028", {"EMAIL_OTP_TRUSTED_DEVICE_DAYS": 401}),
    ("E028", {"EMAIL_OTP_TRUSTED_DEVICE_DAYS": 30.0}),
    ("E028", {"EMAIL_OTP_TRUSTED_DEVICE_DAYS": True}),
    ("E029", {"EMAIL_OTP_TRUSTED_DEVICE_COOKIE": ""}),
    ("E029", {"EMAIL_OTP_TRUSTED_DEVICE_COOKIE": "trusted device"}),
    ("E029", {"EMAIL_OTP_TRUSTED_DEVICE_COOKIE": "sessionid"}),
    ("E029", {"EMAIL_OTP_TRUSTED_DEVICE_COOKIE": "csrftoken"}),
    ("E033", {"EMAIL_OTP_BACKUP_CODE_COUNT": 0}),
    ("E033", {"EMAIL_OTP_BACKUP_CODE_COUNT": 51}),
    ("E033", {"EMAIL_OTP_BACKUP_CODE_COUNT": "10"}),
    ("E034", {"EMAIL_OTP_BACKUP_CODE_LENGTH": 9}),  # 45 bits
    ("E034", {"EMAIL_OTP_BACKUP_CODE_LENGTH": 33}),
    ("E034", {"EMAIL_OTP_BACKUP_CODE_LENGTH": 10.0}),
    ("E034", {"EMAIL_OTP_BACKUP_CODE_LENGTH": True}),
    ("E035", {"EMAIL_OTP_BACKUP_CODE_HASHER": {"time_cost": 0, "memory_cost": 19456, "parallelism": 1}}),
    ("E035", {"EMAIL_OTP_BACKUP_CODE_HASHER": {"time_cost": 2, "memory_cost": 8191, "parallelism": 1}}),
    ("E035", {"EMAIL_OTP_BACKUP_CODE_HASHER": {"time_cost": 2, "memory_cost": 19456, "parallelism": 0}}),
    ("E035", {"EMAIL_OTP_BACKUP_CODE_HASHER": {"time_cost": 2, "memory_cost": "19456", "parallelism": 1}}),
    ("E035", {"EMAIL_OTP_BACKUP_CODE_HASHER": {"time_cost": 2, "memory_cost": 19456}}),
    ("E035", {"EMAIL_OTP_BACKUP_CODE_HASHER": {"time_cost": 2, "memory_cost": 19456, "parallelism": 1, "lanes": 2}}),
    ("E035", {"EMAIL_OTP_BACKUP_CODE_HASHER": (2, 19456, 1)}),
    ("E036", {"EMAIL_OTP_NOTIFY_USERS": "no"}),  # a non-empty string reads as true: notices would go on
    ("E036", {"EMAIL_OTP_NOTIFY_USERS": 0}),
    ("E036", {"EMAIL_OTP_NOTIFY_USERS": None}),
    ("E037", {"EMAIL_OTP_NOTIFY_AFTER_FAILURES": 0}),
    ("E037", {"EMAIL_OTP_NOTIFY_AFTER_FAILURES": "3"}),
    ("E037", {"EMAIL_OTP_NOTIFY_AFTER_FAILURES": 3.0}),
    ("E037", {"EMAIL_OTP_NOTIFY_AFTER_FAILURES": True}),
]

# Values at the edges of every range, and the other documented forms, raise nothing.
GOOD: list[dict[str, Any]] = [
    {"EMAIL_OTP_CODE_LENGTH": 6},
    {"EMAIL_OTP_CODE_LENGTH": 10},
    {"EMAIL_OTP_CODE_TTL": 2, "EMAIL_OTP_RESEND_COOLDOWN": 0, "EMAIL_OTP_DELIVERY_LEASE": 1},
    {"EMAIL_OTP_DELIVERY": "tasks", "EMAIL_OTP_TASKS_QUEUE": "emailotp", "EMAIL_OTP_DELIVERY_LEASE": 299},
    {"EMAIL_OTP_CODE_TTL": 600, "EMAIL_OTP_RESEND_COOLDOWN": 600},
    {"EMAIL_OTP_MAX_ATTEMPTS": 1},
    {"EMAIL_OTP_MAX_ATTEMPTS": 10},
    {"EMAIL_OTP_DELIVERY": "celery"},
    {"EMAIL_OTP_FROM_EMAIL": "Example <otp@example.com>"},
    {"EMAIL_OTP_FROM_EMAIL": None, "DEFAULT_FROM_EMAIL": "otp@example.com"},
    {"EMAIL_OTP_SITE_URL": "http://127.0.0.1:8000", "DEBUG": True},
    {"EMAIL_OTP_PURPOSES": {"payout": "confirm a payout", "delete_account": "delete your account"}},
    {"EMAIL_OTP_TRUSTED_PROXY_COUNT": 2},
    {"REST_FRAMEWORK": {"DEFAULT_AUTHENTICATION_CLASSES": [SESSION_AUTH, TOKEN_AUTH]}},
    {"REST_FRAMEWORK": {"DEFAULT_AUTHENTICATION_CLASSES": []}},
    {"EMAIL_OTP_IPV6_PREFIX_LENGTH": 32},
    {"EMAIL_OTP_IPV6_PREFIX_LENGTH": 56},
    {"EMAIL_OTP_IPV6_PREFIX_LENGTH": 128},
    {"EMAIL_OTP_DELIVERY_MAX_RETRIES": 0},
    {"EMAIL_OTP_DELIVERY_MAX_RETRIES": 20},
    {"EMAIL_OTP_DELIVERY_RETRY_BACKOFF": 0.5, "EMAIL_OTP_DELIVERY_RETRY_BACKOFF_MAX": 0.5},
    {"EMAIL_OTP_DELIVERY_FALLBACK": "sync"},
    {"EMAIL_OTP_BROKER_RETRY_POLICY": {"max_retries": 3}},
    {"EMAIL_OTP_CELERY_QUEUE": "otp"},
    {"EMAIL_OTP_STEP_UP_MAX_AGE": 1},
    {"EMAIL_OTP_STEP_UP_MAX_AGE": 12 * 3600},
    {"EMAIL_OTP_STEP_UP_SLIDING": True, "EMAIL_OTP_STEP_UP_REPLAY": False},
    {"EMAIL_OTP_PROTECTED_URLS": ["admin:*", "!admin:logout", "^/settings/", "!^/settings/public/"]},
    {"EMAIL_OTP_PROTECTED_URLS": []},
    # Without the middleware: fine while no view needs step-up.
    {"MIDDLEWARE": OTHER_MIDDLEWARE, "EMAIL_OTP_PROTECTED_URLS": [], "ROOT_URLCONF": __name__},
    {
        "MIDDLEWARE": [name for name in WITHOUT_CSRF if name != OTP_MIDDLEWARE],
        "EMAIL_OTP_PROTECTED_URLS": [],
        "ROOT_URLCONF": __name__,
    },
    {"EMAIL_OTP_RATES": {}},
    {"EMAIL_OTP_RATES": {"send_per_user": "10/5m", "send_per_ip": None, "verify_failures_per_ip": "100/d"}},
    {
        "EMAIL_OTP_RATES": dict.fromkeys(DEFAULT_RATES, "1/s")
        | {"send_per_address": "2/s", "send_per_address_daily": "2/s"}
    },
    {"EMAIL_OTP_RATES": {"send_per_address": None, "send_per_ip_and_address_daily": None}},
    {"EMAIL_OTP_LOCKOUT_THRESHOLD": 1, "EMAIL_OTP_LOCKOUT_DURATION": 1, "EMAIL_OTP_LOCKOUT_MAX_DURATION": 1},
    {"EMAIL_OTP_LOCKOUT_DURATION": 3600, "EMAIL_OTP_LOCKOUT_MAX_DURATION": 7 * 86400},
    {"CACHES": {"default": REDIS_CACHE}, "DEBUG": False, "SILENCED_SYSTEM_CHECKS": []},
    {
        "RATELIMIT_USE_CACHE": "ratelimit",
        "CACHES": {"default": LOCMEM_CACHE, "ratelimit": REDIS_CACHE},
        "DEBUG": False,
        "SILENCED_SYSTEM_CHECKS": [],
    },
    {"EMAIL_OTP_CHALLENGE_RETENTION": 0, "EMAIL_OTP_AUDIT_PII_RETENTION_DAYS": 0, "EMAIL_OTP_AUDIT_RETENTION_DAYS": 1},
    {"EMAIL_OTP_AUDIT_PII_RETENTION_DAYS": 365, "EMAIL_OTP_AUDIT_RETENTION_DAYS": 365},
    {"EMAIL_OTP_ADAPTER": "tests.test_sign_in.CreatingAdapter"},
    {"EMAIL_OTP_SIGN_IN_ENABLED": True, "EMAIL_OTP_API_SIGN_IN_TOKEN": True},
    {"EMAIL_OTP_API_SIGN_IN_TOKEN": False, "INSTALLED_APPS": WITHOUT_AUTHTOKEN},
    {"EMAIL_OTP_CHALLENGE_RETENTION": 30 * 86400, "EMAIL_OTP_AUDIT_RETENTION_DAYS": 3650},
    {"EMAIL_OTP_LOGIN_POLICY": "off", "EMAIL_OTP_TRUSTED_DEVICE_DAYS": 0},
    {"EMAIL_OTP_LOGIN_POLICY": "required", "EMAIL_OTP_TRUSTED_DEVICE_DAYS": 400},
    {"EMAIL_OTP_LOGIN_POLICY": "required_staff", "EMAIL_OTP_TRUSTED_DEVICE_COOKIE": "remembered-browser_2"},
    {"EMAIL_OTP_BACKUP_CODE_COUNT": 1, "EMAIL_OTP_BACKUP_CODE_LENGTH": 10},
    {"EMAIL_OTP_BACKUP_CODE_COUNT": 50, "EMAIL_OTP_BACKUP_CODE_LENGTH": 32},
    {"EMAIL_OTP_BACKUP_CODE_HASHER": {"time_cost": 1, "memory_cost": 8192, "parallelism": 1}},
    {"EMAIL_OTP_BACKUP_CODE_HASHER": {"time_cost": 3, "memory_cost": 65536, "parallelism": 4}},
    {"EMAIL_OTP_NOTIFY_USERS": False, "EMAIL_OTP_NOTIFY_AFTER_FAILURES": 1},
    {"EMAIL_OTP_NOTIFY_USERS": True, "EMAIL_OTP_NOTIFY_AFTER_FAILURES": 9},
]


def emailotp_ids() -> list[str]:
    return sorted(
        message.id
        for message in run_checks()
        if message.id and message.id.startswith("emailotp.") and not message.is_silenced()
    )


@pytest.fixture
def configured(request: pytest.FixtureRequest) -> Iterator[None]:
    values = dict(request.param)
    with override_settings(**{name: value for name, value in values.items() if value is not UNSET}):
        for name, value in values.items():
            if value is UNSET:
                delattr(settings, name)
        yield


def test_no_message_under_the_test_settings() -> None:
    assert emailotp_ids() == []


@pytest.mark.parametrize(("check_id", "configured"), BAD, indirect=["configured"], ids=[c for c, _ in BAD])
@pytest.mark.usefixtures("configured")
def test_each_check_fires_on_a_bad_value(check_id: str) -> None:
    assert emailotp_ids() == [f"emailotp.{check_id}"]
    [message] = [m for m in run_checks() if m.id == f"emailotp.{check_id}"]
    assert (message.msg, message.hint) == MESSAGES[check_id]
    assert message.is_serious() == check_id.startswith("E")


@pytest.mark.parametrize("configured", GOOD, indirect=True)
@pytest.mark.usefixtures("configured")
def test_good_values_raise_nothing() -> None:
    assert emailotp_ids() == []


def test_celery_delivery_without_celery(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "celery", None)  # what an environment without the extra looks like
    with override_settings(EMAIL_OTP_DELIVERY="celery"):
        assert emailotp_ids() == ["emailotp.E006"]
    with override_settings(EMAIL_OTP_DELIVERY="sync"):
        assert emailotp_ids() == []


def test_tasks_delivery_without_the_tasks_framework(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only the app's own settings check: with the backport hidden, its own checks could not run at all.
    def ids() -> list[str]:
        return [message.id for message in check_settings(None) if message.id]

    monkeypatch.setitem(sys.modules, "django_tasks", None)  # the backport is not installed
    if django.VERSION >= (6, 0):
        with override_settings(EMAIL_OTP_DELIVERY="tasks"):
            assert ids() == []  # built into Django: nothing to install
        return
    monkeypatch.setitem(sys.modules, "django.tasks", None)  # Django 5.2 has none of its own
    with override_settings(EMAIL_OTP_DELIVERY="tasks"):
        assert ids() == ["emailotp.E038"]
        [message] = check_settings(None)
        assert (message.msg, message.hint) == MESSAGES["E038"]
        assert "pip install 'django-emailotp[tasks]'" in message.hint
    with override_settings(EMAIL_OTP_DELIVERY="sync"):
        assert ids() == []


def test_project_checks_leave_broken_configuration_to_its_own_checks() -> None:
    """A URLconf that does not import is Django's urls checks' to report (they raise), a DRF class that does not
    import DRF's; the app's checks stay quiet about both rather than fail."""
    with override_settings(MIDDLEWARE=OTHER_MIDDLEWARE, ROOT_URLCONF="tests.no_such_urlconf"):
        assert project_checks.check_views_need_the_middleware() == []
    with override_settings(REST_FRAMEWORK={"DEFAULT_AUTHENTICATION_CLASSES": ["tests.no_such_module.Auth"]}):
        assert emailotp_ids() == []


def test_every_check_id_is_exercised() -> None:
    exercised = {check_id for check_id, _ in BAD} | {check_id for check_id, _ in DEPLOY_BAD} | {"E006", "E038"}
    assert exercised == set(MESSAGES)


def test_checks_are_registered_with_the_check_command() -> None:
    call_command("check", verbosity=0)
    with override_settings(EMAIL_OTP_CODE_LENGTH=4), pytest.raises(SystemCheckError, match=r"emailotp\.E001"):
        call_command("check", verbosity=0)
    with override_settings(EMAIL_OTP_SITE_URL="http://example.com", DEBUG=False):
        call_command("check", verbosity=0)  # a warning alone does not fail the command
        with pytest.raises(SystemCheckError, match=r"emailotp\.W002"):
            call_command("check", fail_level="WARNING", verbosity=0)


# ---------------------------------------------------------------------------------------------------------------
# Deploy checks (manage.py check --deploy): Django's cookie and HSTS settings, SECURITY.md rule 16

# A deployment's settings over HTTPS: none of the deploy checks fires.
SECURE_DEPLOY: dict[str, Any] = {
    "SESSION_COOKIE_SECURE": True,
    "CSRF_COOKIE_SECURE": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SECURE_HSTS_SECONDS": 31536000,
}
DEPLOY_BAD: list[tuple[str, dict[str, Any]]] = [
    ("W007", {"SESSION_COOKIE_SECURE": False}),
    ("W008", {"CSRF_COOKIE_SECURE": False}),
    ("W009", {"SESSION_COOKIE_SAMESITE": None}),
    ("W009", {"SESSION_COOKIE_SAMESITE": "None"}),
    ("W010", {"SECURE_HSTS_SECONDS": 0}),  # Django's default
    ("W010", {"SECURE_HSTS_SECONDS": None}),
]
DEPLOY_GOOD: list[dict[str, Any]] = [
    {},
    {"SESSION_COOKIE_SAMESITE": "Strict", "SECURE_HSTS_SECONDS": 3600},
    {"SESSION_COOKIE_SAMESITE": False},  # Django's "no SameSite attribute": browsers treat that as Lax
]


def deploy_ids() -> list[str]:
    return sorted(
        message.id
        for message in run_checks(include_deployment_checks=True)
        if message.id and message.id.startswith("emailotp.") and not message.is_silenced()
    )


# How the check command prints an id: "?: (emailotp.W007) SESSION_COOKIE_SECURE is False, ..."
CHECK_ID_RE = re.compile(r"\((emailotp\.[EW]\d{3})\)")


def check_output(*, deploy: bool) -> str:
    """What ``manage.py check --tag security [--deploy]`` prints (warnings go to stderr). The tag keeps out other
    apps' deploy checks about the test settings themselves (Django 6.1's mail.E001 for the locmem backend)."""
    out, err = StringIO(), StringIO()
    call_command("check", deploy=deploy, tags=["security"], stdout=out, stderr=err)
    return out.getvalue() + err.getvalue()


@pytest.mark.parametrize(
    ("check_id", "configured"),
    [(check_id, {**SECURE_DEPLOY, **values}) for check_id, values in DEPLOY_BAD],
    indirect=["configured"],
    ids=[check_id for check_id, _ in DEPLOY_BAD],
)
@pytest.mark.usefixtures("configured", "db")
def test_each_deploy_check_fires_on_an_insecure_value_under_deploy_only(check_id: str) -> None:
    assert deploy_ids() == [f"emailotp.{check_id}"]
    [message] = [m for m in run_checks(include_deployment_checks=True) if m.id == f"emailotp.{check_id}"]
    assert (message.msg, message.hint) == MESSAGES[check_id]
    assert not message.is_serious()
    assert emailotp_ids() == []  # the plain check run (runserver, migrate, tests) leaves them out
    assert CHECK_ID_RE.findall(check_output(deploy=True)) == [f"emailotp.{check_id}"]
    assert CHECK_ID_RE.findall(check_output(deploy=False)) == []


@pytest.mark.parametrize("configured", [{**SECURE_DEPLOY, **values} for values in DEPLOY_GOOD], indirect=True)
@pytest.mark.usefixtures("configured", "db")
def test_secure_deploy_settings_raise_no_deploy_warning() -> None:
    assert deploy_ids() == []
    assert CHECK_ID_RE.findall(check_output(deploy=True)) == []


@override_settings(
    SESSION_COOKIE_SECURE=False, CSRF_COOKIE_SECURE=False, SESSION_COOKIE_SAMESITE="None", SECURE_HSTS_SECONDS=0
)
@pytest.mark.usefixtures("db")  # Django 6.1's model checks ask the database about JSONField support
def test_check_deploy_reports_every_insecure_setting_and_plain_check_none() -> None:
    expected = ["emailotp.W007", "emailotp.W008", "emailotp.W009", "emailotp.W010"]
    assert deploy_ids() == expected
    assert sorted(CHECK_ID_RE.findall(check_output(deploy=True))) == expected
    with pytest.raises(SystemCheckError, match=r"emailotp\.W007"):
        call_command("check", deploy=True, tags=["security"], fail_level="WARNING", verbosity=0)
    assert CHECK_ID_RE.findall(check_output(deploy=False)) == []
    call_command("check", fail_level="WARNING", verbosity=0)  # without --deploy: nothing to fail on
