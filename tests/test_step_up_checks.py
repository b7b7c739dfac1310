"""The step-up system checks (E017-E020, E041, W005, W011): each fires on its own mistake, none under the defaults."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from django_emailotp.checks import MESSAGES

OTP = "django_emailotp.middleware.EmailOTPMiddleware"
AUTH = "django.contrib.auth.middleware.AuthenticationMiddleware"
WITHOUT_OTP = [name for name in settings.MIDDLEWARE if name != OTP]
QUICKSTART = [*WITHOUT_OTP, OTP]
BEFORE_AUTH = [name for item in WITHOUT_OTP for name in ((OTP, item) if item == AUTH else (item,))]
WITHOUT_AUTH = [name for name in QUICKSTART if name != AUTH]
STEP_UP_IDS = {"E017", "E018", "E019", "E020", "E041", "W005", "W011"}
STEP_UP_SETTINGS = (
    "EMAIL_OTP_STEP_UP_MAX_AGE",
    "EMAIL_OTP_STEP_UP_SLIDING",
    "EMAIL_OTP_STEP_UP_REPLAY",
    "EMAIL_OTP_PROTECTED_URLS",
)
# A URLconf without the step-up pages.
urlpatterns: list[Any] = []


def step_up_messages() -> list[str]:
    return sorted(
        message.id.removeprefix("emailotp.")
        for message in run_checks()
        if message.id and message.id.removeprefix("emailotp.") in STEP_UP_IDS
    )


@pytest.fixture
def defaults() -> Iterator[None]:
    """No step-up setting at all, the middleware where the quickstart puts it, the pages in the URLconf."""
    with override_settings(
        ROOT_URLCONF="tests.stepup_urls", MIDDLEWARE=QUICKSTART, **dict.fromkeys(STEP_UP_SETTINGS, None)
    ):
        for name in STEP_UP_SETTINGS:
            delattr(settings, name)
        yield


@pytest.mark.usefixtures("defaults")
def test_nothing_fires_under_the_defaults() -> None:
    assert BEFORE_AUTH.index(OTP) == BEFORE_AUTH.index(AUTH) - 1
    assert not any(hasattr(settings, name) for name in STEP_UP_SETTINGS)
    assert step_up_messages() == []


@pytest.mark.usefixtures("defaults")
@pytest.mark.parametrize(
    ("check_id", "overrides"),
    [
        ("E017", {"EMAIL_OTP_STEP_UP_MAX_AGE": 0}),
        ("E017", {"EMAIL_OTP_STEP_UP_MAX_AGE": -300}),
        ("E017", {"EMAIL_OTP_STEP_UP_MAX_AGE": 43201}),
        ("E017", {"EMAIL_OTP_STEP_UP_MAX_AGE": 300.0}),
        ("E017", {"EMAIL_OTP_STEP_UP_MAX_AGE": "300"}),
        ("E017", {"EMAIL_OTP_STEP_UP_MAX_AGE": None}),
        ("E018", {"EMAIL_OTP_STEP_UP_SLIDING": 1}),
        ("E018", {"EMAIL_OTP_STEP_UP_SLIDING": None}),
        ("E018", {"EMAIL_OTP_STEP_UP_REPLAY": "false"}),
        ("E019", {"EMAIL_OTP_PROTECTED_URLS": "^/settings/"}),
        ("E019", {"EMAIL_OTP_PROTECTED_URLS": {"admin:*"}}),
        ("E019", {"EMAIL_OTP_PROTECTED_URLS": {"admin:*": True}}),
        ("E019", {"EMAIL_OTP_PROTECTED_URLS": ["admin:*", "^/settings/[a-"]}),
        ("E019", {"EMAIL_OTP_PROTECTED_URLS": ["!^(unclosed"]}),
        ("E019", {"EMAIL_OTP_PROTECTED_URLS": [""]}),
        ("E019", {"EMAIL_OTP_PROTECTED_URLS": ["admin:*", None]}),
        ("E020", {"MIDDLEWARE": BEFORE_AUTH}),
        ("E020", {"MIDDLEWARE": WITHOUT_AUTH}),
        ("E041", {"MIDDLEWARE": WITHOUT_OTP, "EMAIL_OTP_PROTECTED_URLS": ["^/settings/"], "ROOT_URLCONF": __name__}),
        ("W005", {"ROOT_URLCONF": __name__}),
        # tests.stepup_urls has views marked with @step_up_required and StepUpRequiredMixin.
        ("W011", {"MIDDLEWARE": WITHOUT_OTP}),
        # tests.api_urls: DRF views behind the StepUpRequired permission, or wrapped in the decorator.
        ("W011", {"MIDDLEWARE": WITHOUT_OTP, "ROOT_URLCONF": "tests.api_urls"}),
    ],
)
def test_each_step_up_check_fires_alone(check_id: str, overrides: dict[str, Any]) -> None:
    with override_settings(**overrides):
        assert step_up_messages() == [check_id]
        [message] = [m for m in run_checks() if m.id == f"emailotp.{check_id}"]
    assert (message.msg, message.hint) == MESSAGES[check_id]
    assert message.is_serious() is check_id.startswith("E")


@pytest.mark.usefixtures("defaults")
@pytest.mark.parametrize(
    "overrides",
    [
        {"EMAIL_OTP_STEP_UP_MAX_AGE": 1},
        {"EMAIL_OTP_STEP_UP_MAX_AGE": 43200},
        {"EMAIL_OTP_STEP_UP_SLIDING": True, "EMAIL_OTP_STEP_UP_REPLAY": False},
        {"EMAIL_OTP_PROTECTED_URLS": ("admin:*", "!admin:logout")},
        {"EMAIL_OTP_PROTECTED_URLS": ["*:invoice", r"^/settings/\w+/$", "!^/settings/help/"]},
        # No middleware, nothing marked or protected, no pages needed.
        {"MIDDLEWARE": WITHOUT_OTP, "EMAIL_OTP_PROTECTED_URLS": [], "ROOT_URLCONF": __name__},
    ],
)
def test_valid_step_up_settings_raise_nothing(overrides: dict[str, Any]) -> None:
    with override_settings(**overrides):
        assert step_up_messages() == []


@pytest.mark.usefixtures("defaults")
def test_marked_views_without_the_middleware_are_named() -> None:
    with override_settings(MIDDLEWARE=WITHOUT_OTP):
        [message] = [m for m in run_checks() if m.id == "emailotp.W011"]
    assert message.obj == "/bare/, /strict/, /danger/ and 7 more"
    assert str(message).startswith("/bare/, /strict/, /danger/ and 7 more: (emailotp.W011) Views in the URLconf")


@pytest.mark.usefixtures("defaults")
def test_step_up_errors_stop_the_check_command() -> None:
    call_command("check", verbosity=0)
    with (
        override_settings(EMAIL_OTP_PROTECTED_URLS=["^/settings/("]),
        pytest.raises(SystemCheckError, match=r"emailotp\.E019"),
    ):
        call_command("check", verbosity=0)
    with override_settings(MIDDLEWARE=BEFORE_AUTH), pytest.raises(SystemCheckError, match=r"emailotp\.E020"):
        call_command("check", verbosity=0)
    with (
        override_settings(MIDDLEWARE=WITHOUT_OTP, EMAIL_OTP_PROTECTED_URLS=["^/settings/"]),
        pytest.raises(SystemCheckError, match=r"emailotp\.E041"),
    ):
        call_command("check", verbosity=0)
    with override_settings(MIDDLEWARE=WITHOUT_OTP):
        call_command("check", verbosity=0)  # W011 alone is a warning: the marked views hold by themselves
        with pytest.raises(SystemCheckError, match=r"emailotp\.W011"):
            call_command("check", fail_level="WARNING", verbosity=0)
    with override_settings(ROOT_URLCONF=__name__):
        call_command("check", verbosity=0)  # W005 alone is a warning
        with pytest.raises(SystemCheckError, match=r"emailotp\.W005"):
            call_command("check", fail_level="WARNING", verbosity=0)
