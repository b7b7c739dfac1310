"""EmailOTPMiddleware: the three ways to protect a view, exemptions, anonymous users, async views, JSON clients.

The tests of marked views run with the middleware and without it (the ``middleware_installed`` fixture): marks
guard their views by themselves (SECURITY.md rule 20, issue 10 finding 4), and with the middleware a request is
checked once, not twice."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core.mail import EmailMessage
from django.test import AsyncClient, Client

from django_emailotp.models import AuditEvent, StepUpGrant
from tests import stepup_urls
from tests.test_issue import Capture
from tests.test_step_up_views import alice_fixture, confirm, events, stepup_site_fixture  # noqa: F401  (fixtures)

LOGIN = "/accounts/login/"


def prompt_for(path: str, purpose: str = "step_up") -> str:
    return f"/otp/verify/?purpose={purpose}&next={path.replace('/', '%2F')}"


@pytest.fixture
def patterns(settings: Any) -> list[str]:
    settings.EMAIL_OTP_PROTECTED_URLS = stepup_urls.PROTECTED_URLS
    return stepup_urls.PROTECTED_URLS


# ---------------------------------------------------------------------------------------------------------------
# Marked views


@pytest.mark.parametrize(
    ("path", "purpose", "max_age"),
    [
        ("/bare/", "step_up", 300),
        ("/strict/", "step_up", 60),
        ("/danger/", "danger_zone", 300),
        ("/mixin/", "step_up", 120),
    ],
    ids=["bare", "with-max-age", "with-purpose-single-use", "mixin"],
)
@pytest.mark.usefixtures("middleware_installed")
def test_marked_views_redirect_to_the_prompt(alice: Client, user: Any, path: str, purpose: str, max_age: int) -> None:
    response = alice.get(path)
    assert (response.status_code, response["Location"]) == (302, prompt_for(path, purpose))
    assert stepup_urls.RUNS == []
    required = AuditEvent.objects.get()
    assert (required.event, required.user_id, required.purpose) == ("step_up_required", user.pk, purpose)
    assert required.data == {"path": path, "method": "GET", "max_age": max_age}


@pytest.mark.parametrize("path", ["/bare/", "/strict/", "/mixin/"])
@pytest.mark.usefixtures("middleware_installed")
def test_marked_views_run_after_step_up(
    alice: Client,
    django_capture_on_commit_callbacks: Capture,
    mailoutbox: list[EmailMessage],
    path: str,
) -> None:
    alice.get(prompt_for(path))
    assert confirm(alice, django_capture_on_commit_callbacks, mailoutbox)["Location"] == path
    response = alice.get(path)
    assert response.status_code == 200
    assert [name for name, *_ in stepup_urls.RUNS] == [path.strip("/")]


def test_unmarked_view_needs_nothing(alice: Client) -> None:
    assert alice.get("/plain/").content == b"plain ran"
    assert events() == []


@pytest.mark.parametrize(
    ("path", "middleware_installed"),
    [
        *(
            (path, installed)
            for path in ("/bare/", "/strict/", "/danger/", "/mixin/", "/async/")
            for installed in (True, False)
        ),
        ("/billing/invoice/", True),  # EMAIL_OTP_PROTECTED_URLS: only the middleware reads them
    ],
    indirect=["middleware_installed"],
)
def test_anonymous_users_go_to_login_first(
    client: Client, db: None, patterns: list[str], path: str, middleware_installed: bool
) -> None:
    response = client.get(path)
    assert (response.status_code, response["Location"]) == (302, f"{LOGIN}?next={path}")
    assert stepup_urls.RUNS == []
    assert events() == []


@pytest.mark.usefixtures("middleware_installed")
def test_anonymous_next_keeps_the_query(client: Client, db: None) -> None:
    response = client.get("/bare/?tab=keys")
    assert response["Location"] == f"{LOGIN}?next=/bare/%3Ftab%3Dkeys"


# ---------------------------------------------------------------------------------------------------------------
# EMAIL_OTP_PROTECTED_URLS


@pytest.mark.parametrize(
    ("path", "protected"),
    [
        ("/billing/invoice/", True),  # "billing:*"
        ("/billing/eu/invoice/", True),  # the wildcard reaches nested namespaces too
        ("/billing/receipt/", False),  # "!billing:receipt"
        ("/invoice/", False),  # same name outside the namespace
        ("/settings/profile/", True),  # "^/settings/"
        ("/settings/help/", False),  # "!^/settings/help/"
        ("/settings/exempt/", False),  # @step_up_exempt
        ("/settings/public/", False),  # @login_not_required
        ("/plain/", False),
    ],
)
def test_protected_url_patterns(alice: Client, patterns: list[str], path: str, protected: bool) -> None:
    response = alice.get(path)
    if protected:
        assert (response.status_code, response["Location"]) == (302, prompt_for(path))
        assert stepup_urls.RUNS == []
        assert events() == [("step_up_required", "")]
    else:
        assert response.status_code == 200
        assert len(stepup_urls.RUNS) == 1
        assert events() == []


def test_pattern_protected_views_run_after_step_up(
    alice: Client, patterns: list[str], django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    alice.get("/billing/invoice/")
    alice.get(prompt_for("/billing/invoice/"))
    assert confirm(alice, django_capture_on_commit_callbacks, mailoutbox)["Location"] == "/billing/invoice/"
    assert alice.get("/billing/invoice/").content == b"billing-invoice ran"
    assert alice.get("/settings/profile/").content == b"settings-profile ran"


@pytest.mark.parametrize(
    ("rules", "path", "protected"),
    [
        (["*:invoice"], "/billing/invoice/", True),
        (["*:invoice"], "/invoice/", False),
        (["invoice"], "/invoice/", True),
        (["billing:eu:*"], "/billing/eu/invoice/", True),
        (["billing:eu:*"], "/billing/invoice/", False),
        (["^/billing/", "!billing:*"], "/billing/invoice/", False),  # the last matching rule wins
        (["!billing:*", "^/billing/"], "/billing/invoice/", True),
        (["^/settings/$"], "/settings/profile/", False),
        ([r"^/settings/\w+/$"], "/settings/profile/", True),
    ],
)
def test_pattern_forms(alice: Client, settings: Any, rules: list[str], path: str, protected: bool) -> None:
    settings.EMAIL_OTP_PROTECTED_URLS = rules
    assert (alice.get(path).status_code == 302) is protected


def test_public_views_stay_open_under_a_catch_all(client: Client, user: Any, settings: Any) -> None:
    """With every URL protected, the login page (login_not_required) and the step-up pages themselves stay open."""
    settings.EMAIL_OTP_PROTECTED_URLS = ["^/", "*"]
    signed_in = client.post(LOGIN, {"username": "alice", "password": "correct horse battery staple"})
    assert (signed_in.status_code, signed_in["Location"]) == (302, "/home/")
    client.logout()
    assert client.get("/settings/public/").content == b"settings-public ran"
    client.force_login(user)
    assert client.get("/otp/verify/?purpose=step_up").status_code == 200
    assert client.get("/home/")["Location"] == prompt_for("/home/")


def test_patterns_need_the_middleware(alice: Client, settings: Any, patterns: list[str]) -> None:
    settings.MIDDLEWARE = [name for name in settings.MIDDLEWARE if "emailotp" not in name]
    assert alice.get("/billing/invoice/").status_code == 200


# ---------------------------------------------------------------------------------------------------------------
# Async views


@pytest.mark.usefixtures("middleware_installed")
def test_async_view(
    alice: Client, user: Any, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    browser = AsyncClient()
    browser.cookies = alice.cookies  # the same signed-in session
    response = async_to_sync(browser.get)("/async/")
    assert (response.status_code, response["Location"]) == (302, prompt_for("/async/"))
    assert stepup_urls.RUNS == []
    assert AuditEvent.objects.get().data == {"path": "/async/", "method": "GET", "max_age": 300}

    alice.get(prompt_for("/async/"))
    assert confirm(alice, django_capture_on_commit_callbacks, mailoutbox)["Location"] == "/async/"
    response = async_to_sync(browser.get)("/async/")
    assert (response.status_code, response.content) == (200, b"async ran")
    assert stepup_urls.RUNS == [("async", "GET", [], [])]

    # Another async browser of the same user is not let through by this session's grant.
    stranger = AsyncClient()
    stranger.force_login(user)
    assert async_to_sync(stranger.get)("/async/").status_code == 302


@pytest.mark.usefixtures("middleware_installed")
def test_async_anonymous_goes_to_login(db: None) -> None:
    response = async_to_sync(AsyncClient().get)("/async/")
    assert (response.status_code, response["Location"]) == (302, f"{LOGIN}?next=/async/")


# ---------------------------------------------------------------------------------------------------------------
# JSON clients


@pytest.mark.parametrize(
    ("path", "purpose", "max_age"),
    [("/bare/", "step_up", 300), ("/strict/", "step_up", 60), ("/danger/", "danger_zone", 300)],
)
@pytest.mark.usefixtures("middleware_installed")
def test_json_clients_get_401(alice: Client, path: str, purpose: str, max_age: int) -> None:
    response = alice.get(path, HTTP_ACCEPT="application/json")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert "no-store" in response["Cache-Control"]
    assert response.json() == {
        "error": "step_up_required",
        "message": "Confirm it is you with a code sent to your email address first.",
        "purpose": purpose,
        "max_age": max_age,
        "challenge_url": prompt_for(path, purpose),
    }
    assert events() == [("step_up_required", "")]


@pytest.mark.usefixtures("middleware_installed")
def test_json_post_is_not_kept(alice: Client) -> None:
    response = alice.post("/transfer/", {"amount": "1"}, HTTP_ACCEPT="application/json")
    assert response.status_code == 401
    assert "_emailotp_replay" not in alice.session


@pytest.mark.usefixtures("middleware_installed")
def test_authorization_header_means_an_api_client(alice: Client) -> None:
    response = alice.get("/bare/", HTTP_AUTHORIZATION="Token abc")
    assert response.status_code == 401
    # RFC 9470: the challenge names the scheme the client used.
    assert response["WWW-Authenticate"] == (
        'Token error="insufficient_user_authentication", '
        'error_description="A fresh email one-time code is required", max_age="300"'
    )


@pytest.mark.parametrize("headers", [{"Accept": "application/json"}, {"Authorization": "Token abc"}])
@pytest.mark.parametrize("path", ["/bare/", "/async/"])
@pytest.mark.usefixtures("middleware_installed")
def test_anonymous_api_clients_never_reach_a_plain_protected_view(
    client: Client, db: None, path: str, headers: dict[str, str]
) -> None:
    """A plain Django view marked for step-up has no permission classes of its own to turn anonymous callers away."""
    if path == "/async/":
        response: Any = async_to_sync(AsyncClient().get)(path, headers=headers)
    else:
        response = client.get(path, headers=headers)
    assert (response.status_code, response["Location"]) == (302, f"{LOGIN}?next={path}")
    assert stepup_urls.RUNS == []


@pytest.mark.usefixtures("middleware_installed")
def test_browsers_accepting_html_and_json_get_the_redirect(alice: Client) -> None:
    response = alice.get("/bare/", HTTP_ACCEPT="text/html,application/json;q=0.9")
    assert (response.status_code, response["Location"]) == (302, prompt_for("/bare/"))


@pytest.mark.usefixtures("middleware_installed")
def test_json_client_with_a_grant_passes(
    alice: Client, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    confirm(alice, django_capture_on_commit_callbacks, mailoutbox)
    response = alice.get("/bare/", HTTP_ACCEPT="application/json")
    assert (response.status_code, response.content) == (200, b"bare ran")
    assert StepUpGrant.objects.count() == 1


# ---------------------------------------------------------------------------------------------------------------
# Checked once: with the middleware, the view's own guard does not check (or use a grant) again


@pytest.mark.usefixtures("middleware_installed")
def test_a_single_use_grant_is_used_once_per_request(
    alice: Client, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    confirm(alice, django_capture_on_commit_callbacks, mailoutbox, "danger_zone")
    assert alice.get("/danger/").content == b"danger ran"
    # Checked twice, the second check would have found the grant used up and sent this request to the prompt.
    assert events("step_up_used", "step_up_required") == [("step_up_used", "")]
    assert StepUpGrant.objects.get().consumed_at is not None

    again = alice.get("/danger/")
    assert (again.status_code, again["Location"]) == (302, prompt_for("/danger/", "danger_zone"))
    assert events("step_up_used", "step_up_required") == [("step_up_used", ""), ("step_up_required", "")]
    assert [name for name, *_ in stepup_urls.RUNS] == ["danger"]


@pytest.mark.usefixtures("middleware_installed")
def test_stacked_marks_each_demand_their_grant(
    alice: Client, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    """An outer @step_up_required over an inner one with another purpose: both hold (the outer mark used to hide
    the inner one from the middleware)."""
    confirm(alice, django_capture_on_commit_callbacks, mailoutbox)
    denied = alice.get("/stacked/")
    assert (denied.status_code, denied["Location"]) == (302, prompt_for("/stacked/", "danger_zone"))
    confirm(alice, django_capture_on_commit_callbacks, mailoutbox, "danger_zone")
    assert alice.get("/stacked/").content == b"stacked ran"
    assert [name for name, *_ in stepup_urls.RUNS] == ["stacked"]
