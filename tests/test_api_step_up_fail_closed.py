"""Fail closed on DRF views (SECURITY.md rule 20, issue 10 finding 4): without ``EmailOTPMiddleware``, a DRF view
wrapped in ``@step_up_required`` and one behind the ``StepUpRequired`` permission still demand a grant."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from django_emailotp.models import AuditEvent
from tests import api_urls
from tests.test_api import (  # noqa: F401  (fixtures)
    Api,
    Flow,
    api_fixture,
    api_site_fixture,
    clock_fixture,
    events,
    flow_fixture,
    session_api,
)
from tests.test_api_step_up import assert_step_up_required
from tests.test_step_up_fail_closed import OTP_MIDDLEWARE

JSON = {"Accept": "application/json"}


@pytest.fixture(autouse=True)
def no_middleware(settings: Any) -> None:
    settings.MIDDLEWARE = [name for name in settings.MIDDLEWARE if name != OTP_MIDDLEWARE]


@pytest.mark.parametrize("path", ["/api/decorated/", "/api/decorated-once/", "/api/secret/", "/api/danger/"])
def test_decorated_and_permission_views_answer_401(api: Api, user: Any, path: str) -> None:
    purpose = "danger_zone" if path == "/api/danger/" else "step_up"
    response = api.get(path, headers=JSON)
    assert_step_up_required(response, api, purpose)
    assert api_urls.view_runs == []
    required = AuditEvent.objects.get()
    assert (required.event, required.user_id, required.purpose) == ("step_up_required", user.pk, purpose)
    assert required.data == {"path": path, "method": "GET", "max_age": 300}


def test_decorated_views_run_after_step_up_and_single_use_holds(api: Api, flow: Flow) -> None:
    flow.step_up(api)
    assert api.get("/api/decorated/", headers=JSON).status_code == 200
    assert api.post("/api/decorated-once/", headers=JSON).status_code == 200
    assert_step_up_required(api.post("/api/decorated-once/", headers=JSON), api)
    assert api_urls.view_runs == [("decorated", "alice", api.kind)] * 2
    assert events("step_up_used", "step_up_required") == [("step_up_used", ""), ("step_up_required", "")]


@pytest.mark.usefixtures("clock")
def test_a_browser_navigation_to_a_decorated_drf_view_is_sent_to_the_prompt(user: Any, flow: Flow) -> None:
    browser = session_api(user)
    accept = {"Accept": "text/html,application/xhtml+xml"}
    response = browser.client.get("/api/decorated/", headers=accept)
    assert (response.status_code, response["Location"]) == (
        302,
        "/otp/verify/?purpose=step_up&next=%2Fapi%2Fdecorated%2F",
    )
    assert api_urls.view_runs == []


def test_bad_credentials_and_anonymous_clients_are_refused(db: None) -> None:
    response = Client().get("/api/decorated/", headers={"Authorization": "Token nope"})
    assert (response.status_code, response.json()) == (403, {"detail": "Invalid token."})
    anonymous = Client().get("/api/decorated/", headers=JSON)
    assert (anonymous.status_code, anonymous.json()) == (
        401,
        {"error": "not_authenticated", "message": "Sign in first."},
    )
    assert AuditEvent.objects.count() == 0
    assert api_urls.view_runs == []


@pytest.mark.usefixtures("clock")
def test_a_session_post_without_csrf_is_refused_by_drf(user: Any, flow: Flow) -> None:
    session = session_api(user)
    flow.step_up(session)
    response = session.client.post("/api/decorated/", {}, content_type="application/json")
    assert response.status_code == 403
    assert response.json()["detail"].startswith("CSRF Failed")
    assert api_urls.view_runs == []
