"""Step-up on DRF views: the StepUpRequired permission (subclass and with_options, single use), the
step_up_required decorator and EMAIL_OTP_PROTECTED_URLS; the 401 body, RFC 9470's WWW-Authenticate for token
credentials, and the HTML prompt for a browser navigation.

The permission and the decorator hold without EmailOTPMiddleware too (SECURITY.md rule 20, issue 10 finding 4):
their tests run both ways (the ``middleware_installed`` fixture); EMAIL_OTP_PROTECTED_URLS needs the middleware."""

from __future__ import annotations

from typing import Any

import pytest
import time_machine
from django.test import Client

from django_emailotp.models import AuditEvent, StepUpGrant
from tests import api_urls
from tests.test_api import (  # noqa: F401  (fixtures)
    Api,
    Flow,
    api_fixture,
    api_site_fixture,
    bob_api_fixture,
    clock_fixture,
    events,
    flow_fixture,
    session_api,
    token_api,
)

MESSAGE = "Confirm it is you with a code sent to your email address first."


def step_up_required(purpose: str = "step_up", max_age: int = 300) -> dict[str, Any]:
    return {
        "error": "step_up_required",
        "message": MESSAGE,
        "purpose": purpose,
        "max_age": max_age,
        "challenge_url": "/api/otp/challenges/",
    }


def rfc9470(scheme: str, max_age: int = 300) -> str:
    return (
        f'{scheme} error="insufficient_user_authentication", '
        f'error_description="A fresh email one-time code is required", max_age="{max_age}"'
    )


def assert_step_up_required(response: Any, api: Api, purpose: str = "step_up", max_age: int = 300) -> None:
    assert response.status_code == 401
    assert response.json() == step_up_required(purpose, max_age)
    if api.kind == "session":
        assert "WWW-Authenticate" not in response
    else:
        assert response["WWW-Authenticate"] == rfc9470("Token", max_age)


@pytest.fixture
def protected_urls(settings: Any) -> list[str]:
    settings.EMAIL_OTP_PROTECTED_URLS = api_urls.PROTECTED_URLS
    return api_urls.PROTECTED_URLS


# ---------------------------------------------------------------------------------------------------------------
# The StepUpRequired permission


@pytest.mark.parametrize(
    ("path", "purpose", "max_age"),
    [
        ("/api/secret/", "step_up", 300),
        ("/api/strict/", "step_up", 60),  # with_options(max_age=60)
        ("/api/transfer/", "step_up", 300),  # with_options(single_use=True)
        ("/api/danger/", "danger_zone", 300),  # a subclass
    ],
)
@pytest.mark.usefixtures("middleware_installed")
def test_permission_answers_401_step_up_required(api: Api, user: Any, path: str, purpose: str, max_age: int) -> None:
    response = api.get(path)
    assert_step_up_required(response, api, purpose, max_age)
    assert api_urls.view_runs == []
    required = AuditEvent.objects.get()
    assert (required.event, required.user_id, required.purpose, required.session_hash) == (
        "step_up_required",
        user.pk,
        purpose,
        "" if api.kind == "session" and "_emailotp_binding" not in api.client.session else required.session_hash,
    )
    assert required.data == {"path": path, "method": "GET", "max_age": max_age}


@pytest.mark.usefixtures("middleware_installed")
def test_permission_passes_after_step_up(api: Api, flow: Flow) -> None:
    assert api.get("/api/secret/").status_code == 401
    flow.step_up(api)
    response = api.get("/api/secret/")
    assert (response.status_code, response.json()) == (200, {"view": "secret", "user": "alice"})
    assert api.post("/api/secret/").status_code == 200
    assert api_urls.view_runs == [("secret", "alice", api.kind)] * 2
    # A sliding window is off by default: using the grant does not renew or consume it.
    assert StepUpGrant.objects.get().consumed_at is None


def test_with_options_max_age(api: Api, clock: time_machine.Traveller, flow: Flow) -> None:
    flow.step_up(api)
    assert api.get("/api/strict/").status_code == 200
    clock.shift(61)
    assert_step_up_required(api.get("/api/strict/"), api, max_age=60)
    assert api.get("/api/secret/").status_code == 200  # the default 300 s window still holds
    assert [name for name, *_ in api_urls.view_runs] == ["strict", "secret"]


@pytest.mark.usefixtures("middleware_installed")
def test_single_use_grant_allows_one_request(api: Api, user: Any, flow: Flow) -> None:
    flow.step_up(api)
    assert api.post("/api/transfer/").status_code == 200
    assert_step_up_required(api.post("/api/transfer/"), api)
    assert api_urls.view_runs == [("transfer", "alice", api.kind)]
    grant = StepUpGrant.objects.get()
    assert grant.consumed_at is not None
    used = AuditEvent.objects.get(event="step_up_used")
    assert (used.user_id, used.purpose, used.data) == (user.pk, "step_up", {"path": "/api/transfer/"})
    assert events("step_up_used", "step_up_required") == [("step_up_used", ""), ("step_up_required", "")]


def test_subclass_with_purpose_and_single_use(api: Api, flow: Flow) -> None:
    flow.step_up(api)  # a step_up grant does not open the danger zone
    assert_step_up_required(api.get("/api/danger/"), api, "danger_zone")
    flow.step_up(api, "danger_zone")
    assert api.get("/api/danger/").status_code == 200
    assert_step_up_required(api.get("/api/danger/"), api, "danger_zone")
    assert api_urls.view_runs == [("danger", "alice", api.kind)]


def test_anonymous_clients_get_drf_authentication_errors_not_step_up(db: None) -> None:
    response = Client().get("/api/secret/", headers={"Accept": "application/json"})
    assert (response.status_code, response.json()) == (
        403,
        {"detail": "Authentication credentials were not provided."},
    )
    assert AuditEvent.objects.count() == 0


def test_bearer_credentials_are_challenged_with_the_bearer_scheme(user: Any, clock: Any, flow: Flow) -> None:
    api_urls.BEARER_KEYS["key-a"] = user.username
    response = Client().get("/api/secret/", headers={"Authorization": "Bearer key-a"})
    assert response.status_code == 401
    assert response.json() == step_up_required()
    assert response["WWW-Authenticate"] == (
        'Bearer error="insufficient_user_authentication", '
        'error_description="A fresh email one-time code is required", max_age="300"'
    )
    strict = Client().get("/api/strict/", headers={"Authorization": "Bearer key-a"})
    assert strict["WWW-Authenticate"] == rfc9470("Bearer", 60)


def test_the_challenge_url_starts_the_flow(api: Api, flow: Flow) -> None:
    """What a client does with the 401: POST to challenge_url, verify, retry."""
    denied = api.get("/api/secret/").json()
    body, code = flow.create(api, denied["purpose"])
    assert denied["challenge_url"] == api.prefix
    assert api.post(f"{denied['challenge_url']}{body['id']}/verify/", {"code": code}).status_code == 200
    assert api.get("/api/secret/").status_code == 200


# ---------------------------------------------------------------------------------------------------------------
# The decorator and EMAIL_OTP_PROTECTED_URLS on DRF views (the middleware authenticates the DRF way)


DECORATED_BOTH_WAYS_BILLING_WITH_THE_MIDDLEWARE = pytest.mark.parametrize(
    ("path", "middleware_installed"),
    [("/api/decorated/", True), ("/api/decorated/", False), ("/api/billing/", True)],
    indirect=["middleware_installed"],
)


@DECORATED_BOTH_WAYS_BILLING_WITH_THE_MIDDLEWARE
def test_decorator_and_protected_urls_with_token_auth(
    api: Api, user: Any, flow: Flow, protected_urls: list[str], path: str, middleware_installed: bool
) -> None:
    response = api.get(path, headers={"Accept": "application/json"})
    assert_step_up_required(response, api)
    assert "no-store" in response["Cache-Control"]
    assert api_urls.view_runs == []
    required = AuditEvent.objects.get()
    assert (required.event, required.user_id, required.data) == (
        "step_up_required",
        user.pk,
        {"path": path, "method": "GET", "max_age": 300},
    )
    flow.step_up(api)
    assert api.get(path, headers={"Accept": "application/json"}).status_code == 200
    name = path.strip("/").split("/")[1]
    assert api_urls.view_runs == [(name, "alice", api.kind)]


@pytest.mark.usefixtures("middleware_installed")
def test_token_clients_without_accept_header_get_json(user: Any, clock: Any, flow: Flow) -> None:
    """An Authorization header marks an API client even when it accepts anything."""
    token = token_api(user)
    response = token.get("/api/decorated/", headers={"Accept": "*/*"})
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == rfc9470("Token")


@pytest.mark.usefixtures("middleware_installed")
def test_decorated_single_use(api: Api, flow: Flow) -> None:
    flow.step_up(api)
    json = {"Accept": "application/json"}
    assert api.post("/api/decorated-once/", headers=json).status_code == 200
    assert_step_up_required(api.post("/api/decorated-once/", headers=json), api)
    assert api_urls.view_runs == [("decorated", "alice", api.kind)]


@pytest.mark.usefixtures("middleware_installed")
def test_a_token_grant_does_not_open_decorated_views_for_the_session(user: Any, clock: Any, flow: Flow) -> None:
    token, session = token_api(user), session_api(user)
    flow.step_up(token)
    assert token.get("/api/decorated/").status_code == 200
    assert session.get("/api/decorated/", headers={"Accept": "application/json"}).status_code == 401


@DECORATED_BOTH_WAYS_BILLING_WITH_THE_MIDDLEWARE
def test_bad_credentials_are_left_to_the_view(
    db: None, protected_urls: list[str], path: str, middleware_installed: bool
) -> None:
    response = Client().get(path, headers={"Authorization": "Token nope"})
    assert (response.status_code, response.json()) == (403, {"detail": "Invalid token."})
    anonymous = Client().get(path, headers={"Accept": "application/json"})
    assert (anonymous.status_code, anonymous.json()) == (
        401,
        {"error": "not_authenticated", "message": "Sign in first."},
    )
    assert AuditEvent.objects.count() == 0
    assert api_urls.view_runs == []


@pytest.mark.parametrize(
    ("body", "content_type"),
    [("{}", "application/json"), ("a=1", "application/x-www-form-urlencoded"), ("", "application/json")],
)
@pytest.mark.usefixtures("middleware_installed")
def test_session_posts_to_a_decorated_view_need_step_up(
    user: Any, clock: Any, flow: Flow, body: str, content_type: str
) -> None:
    """Whatever the body, the guard sees the session user (the CSRF check reads no JSON body)."""
    session = session_api(user)
    json = {"Accept": "application/json"}
    denied = session.post("/api/decorated-once/", body, content_type=content_type, headers=json)
    assert_step_up_required(denied, session)
    flow.step_up(session)
    assert session.post("/api/decorated-once/", body, content_type=content_type, headers=json).status_code == 200
    assert_step_up_required(
        session.post("/api/decorated-once/", body, content_type=content_type, headers=json), session
    )
    assert api_urls.view_runs == [("decorated", "alice", "session")]


@pytest.mark.usefixtures("middleware_installed")
def test_session_post_without_csrf_to_a_decorated_view_is_refused_by_drf(user: Any, clock: Any, flow: Flow) -> None:
    session = session_api(user)
    flow.step_up(session)
    response = session.client.post("/api/decorated/", {}, content_type="application/json")
    assert response.status_code == 403
    assert response.json()["detail"].startswith("CSRF Failed")
    assert api_urls.view_runs == []


# ---------------------------------------------------------------------------------------------------------------
# A browser navigation still gets the HTML prompt


@pytest.mark.parametrize(
    ("path", "middleware_installed"),
    [("/api/decorated/", True), ("/api/decorated/", False), ("/api/billing/", True), ("/api/secret/", True)],
    indirect=["middleware_installed"],
)
def test_browser_navigation_is_redirected_to_the_prompt(
    user: Any, clock: Any, flow: Flow, protected_urls: list[str], path: str, middleware_installed: bool
) -> None:
    browser = session_api(user)
    accept = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
    response = browser.client.get(path, headers=accept)
    assert response.status_code == 302
    assert response["Location"] == f"/otp/verify/?purpose=step_up&next={path.replace('/', '%2F')}"
    assert api_urls.view_runs == []
    flow.step_up(browser)
    assert browser.client.get(path, headers=accept).status_code == 200


@pytest.mark.parametrize("middleware_installed", [False], indirect=True)
def test_without_the_middleware_a_navigation_to_the_permission_gets_its_401(
    user: Any, clock: Any, middleware_installed: bool
) -> None:
    """Only the middleware can send a browser opening a permission-protected DRF view to the prompt (DRF answers
    a permission's refusal through its exception handler); the permission still refuses."""
    browser = session_api(user)
    response = browser.client.get("/api/secret/", headers={"Accept": "text/html,application/xhtml+xml"})
    assert response.status_code == 401
    assert api_urls.view_runs == []
    assert events("step_up_required") == [("step_up_required", "")]


def test_browser_navigation_leaves_a_single_use_grant_to_the_permission(user: Any, clock: Any, flow: Flow) -> None:
    """The middleware only looks for the grant; the permission uses it up, once. The browsable API's checks for
    the other methods' forms (POST, OPTIONS) neither use a grant nor audit a requirement."""
    browser = session_api(user)
    accept = {"Accept": "text/html,application/xhtml+xml"}
    flow.step_up(browser)
    assert browser.client.get("/api/transfer/", headers=accept).status_code == 200
    again = browser.client.get("/api/transfer/", headers=accept)
    assert (again.status_code, again["Location"]) == (302, "/otp/verify/?purpose=step_up&next=%2Fapi%2Ftransfer%2F")
    assert api_urls.view_runs == [("transfer", "alice", "session")]
    assert events("step_up_used", "step_up_required") == [("step_up_used", ""), ("step_up_required", "")]


def test_fetch_without_an_accept_header_still_gets_json(user: Any, clock: Any) -> None:
    """fetch() sends Accept: */*; only a navigation that asks for HTML by name is redirected."""
    session = session_api(user)
    for accept in ("*/*", ""):
        response = session.client.get("/api/secret/", headers={"Accept": accept} if accept else {})
        assert_step_up_required(response, session)
