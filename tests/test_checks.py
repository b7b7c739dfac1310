"""System checks emailotp.E0xx / W0xx: each fires on a bad value, none fires on good ones, and they are registered."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from django_emailotp.checks import MESSAGES

UNSET = object()
OTP_MIDDLEWARE = "django_emailotp.middleware.EmailOTPMiddleware"
OTHER_MIDDLEWARE = [name for name in settings.MIDDLEWARE if name != OTP_MIDDLEWARE]
# A URLconf without the step-up pages (W005), this module's own.
urlpatterns: list[Any] = []

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
    ("E012", {"EMAIL_OTP_DELIVERY_MAX_RETRIES": -1}),
    ("E012", {"EMAIL_OTP_DELIVERY_MAX_RETRIES": 21}),
    ("E013", {"EMAIL_OTP_DELIVERY_RETRY_BACKOFF": 0}),
    ("E013", {"EMAIL_OTP_DELIVERY_RETRY_BACKOFF": 10, "EMAIL_OTP_DELIVERY_RETRY_BACKOFF_MAX": 5}),
    ("E013", {"EMAIL_OTP_DELIVERY_RETRY_BACKOFF_MAX": "60"}),
    ("E014", {"EMAIL_OTP_DELIVERY_FALLBACK": "queue"}),
    ("E015", {"EMAIL_OTP_BROKER_RETRY_POLICY": [("max_retries", 1)]}),
    ("E016", {"EMAIL_OTP_CELERY_QUEUE": ""}),
    ("E016", {"EMAIL_OTP_CELERY_QUEUE": 5}),
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
    ("W004", {"MIDDLEWARE": OTHER_MIDDLEWARE, "EMAIL_OTP_PROTECTED_URLS": ["admin:*"]}),
    ("W005", {"ROOT_URLCONF": __name__}),
]

# Values at the edges of every range, and the other documented forms, raise nothing.
GOOD: list[dict[str, Any]] = [
    {"EMAIL_OTP_CODE_LENGTH": 6},
    {"EMAIL_OTP_CODE_LENGTH": 10},
    {"EMAIL_OTP_CODE_TTL": 1, "EMAIL_OTP_RESEND_COOLDOWN": 0},
    {"EMAIL_OTP_CODE_TTL": 600, "EMAIL_OTP_RESEND_COOLDOWN": 600},
    {"EMAIL_OTP_MAX_ATTEMPTS": 1},
    {"EMAIL_OTP_MAX_ATTEMPTS": 10},
    {"EMAIL_OTP_DELIVERY": "celery"},
    {"EMAIL_OTP_FROM_EMAIL": "Example <otp@example.com>"},
    {"EMAIL_OTP_FROM_EMAIL": None, "DEFAULT_FROM_EMAIL": "otp@example.com"},
    {"EMAIL_OTP_SITE_URL": "http://127.0.0.1:8000", "DEBUG": True},
    {"EMAIL_OTP_PURPOSES": {"payout": "confirm a payout", "delete_account": "delete your account"}},
    {"EMAIL_OTP_TRUSTED_PROXY_COUNT": 2},
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
    {"MIDDLEWARE": OTHER_MIDDLEWARE, "EMAIL_OTP_PROTECTED_URLS": []},
]


def emailotp_ids() -> list[str]:
    return sorted(message.id for message in run_checks() if message.id and message.id.startswith("emailotp."))


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


def test_every_check_id_is_exercised() -> None:
    assert {check_id for check_id, _ in BAD} | {"E006"} == set(MESSAGES)


def test_checks_are_registered_with_the_check_command() -> None:
    call_command("check", verbosity=0)
    with override_settings(EMAIL_OTP_CODE_LENGTH=4), pytest.raises(SystemCheckError, match=r"emailotp\.E001"):
        call_command("check", verbosity=0)
    with override_settings(EMAIL_OTP_SITE_URL="http://example.com", DEBUG=False):
        call_command("check", verbosity=0)  # a warning alone does not fail the command
        with pytest.raises(SystemCheckError, match=r"emailotp\.W002"):
            call_command("check", fail_level="WARNING", verbosity=0)
