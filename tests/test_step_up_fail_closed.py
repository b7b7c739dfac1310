"""Fail closed (SECURITY.md rule 20, issue 10 finding 4): ``@step_up_required`` and ``StepUpRequiredMixin`` demand a
grant by themselves, without ``EmailOTPMiddleware`` in MIDDLEWARE; with it, a request is checked once, not twice."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from asgiref.sync import async_to_sync
from django.core.mail import EmailMessage
from django.test import AsyncClient, Client

from django_emailotp.models import AuditEvent, StepUpGrant
from tests import stepup_urls
from tests.conftest import code_from
from tests.test_issue import Capture
from tests.test_step_up_middleware import LOGIN, prompt_for
from tests.test_step_up_views import (  # noqa: F401  (fixtures)
    CONTINUE,
    PROMPT,
    SEND,
    VERIFY,
    alice_fixture,
    confirm,
    csrf_token,
    dict_of,
    events,
    forms_in,
    stepup_site_fixture,
)

OTP_MIDDLEWARE = "django_emailotp.middleware.EmailOTPMiddleware"


@pytest.fixture
def no_middleware(settings: Any) -> None:
    """The project forgot EmailOTPMiddleware (or took it out)."""
    settings.MIDDLEWARE = [name for name in settings.MIDDLEWARE if name != OTP_MIDDLEWARE]


MARKED = [
    ("/bare/", "step_up", 300),
    ("/strict/", "step_up", 60),
    ("/danger/", "danger_zone", 300),
    ("/mixin/", "step_up", 120),
]
MARKED_IDS = ["bare", "with-max-age", "with-purpose-single-use", "mixin"]


@pytest.mark.usefixtures("no_middleware")
@pytest.mark.parametrize(("path", "purpose", "max_age"), MARKED, ids=MARKED_IDS)
def test_without_the_middleware_marked_views_redirect_to_the_prompt(
    alice: Client, user: Any, path: str, purpose: str, max_age: int
) -> None:
    response = alice.get(path)
    assert (response.status_code, response["Location"]) == (302, prompt_for(path, purpose))
    assert stepup_urls.RUNS == []
    required = AuditEvent.objects.get()
    assert (required.event, required.user_id, required.purpose) == ("step_up_required", user.pk, purpose)
    assert required.data == {"path": path, "method": "GET", "max_age": max_age}


@pytest.mark.usefixtures("no_middleware")
@pytest.mark.parametrize(("path", "purpose", "max_age"), MARKED, ids=MARKED_IDS)
def test_without_the_middleware_json_clients_get_401(alice: Client, path: str, purpose: str, max_age: int) -> None:
    response = alice.get(path, headers={"Accept": "application/json"})
    assert response.status_code == 401
    assert "no-store" in response["Cache-Control"]
    assert response.json() == {
        "error": "step_up_required",
        "message": "Confirm it is you with a code sent to your email address first.",
        "purpose": purpose,
        "max_age": max_age,
        "challenge_url": prompt_for(path, purpose),
    }
    assert stepup_urls.RUNS == []
    assert events() == [("step_up_required", "")]


@pytest.mark.usefixtures("no_middleware")
def test_without_the_middleware_a_token_client_gets_the_rfc_9470_challenge(alice: Client) -> None:
    response = alice.get("/bare/", headers={"Authorization": "Token abc"})
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == (
        'Token error="insufficient_user_authentication", '
        'error_description="A fresh email one-time code is required", max_age="300"'
    )
    assert stepup_urls.RUNS == []


@pytest.mark.usefixtures("no_middleware")
@pytest.mark.parametrize("path", ["/bare/", "/mixin/", "/async/"])
def test_without_the_middleware_anonymous_users_go_to_login(client: Client, db: None, path: str) -> None:
    if path == "/async/":
        response: Any = async_to_sync(AsyncClient().get)(path)
    else:
        response = client.get(path)
    assert (response.status_code, response["Location"]) == (302, f"{LOGIN}?next={path}")
    assert stepup_urls.RUNS == []
    assert events() == []


@pytest.mark.usefixtures("no_middleware")
@pytest.mark.parametrize("path", ["/bare/", "/strict/", "/mixin/"])
def test_without_the_middleware_marked_views_run_after_step_up(
    alice: Client, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage], path: str
) -> None:
    assert alice.get(path).status_code == 302
    alice.get(prompt_for(path))
    assert confirm(alice, django_capture_on_commit_callbacks, mailoutbox)["Location"] == path
    response = alice.get(path)
    assert (response.status_code, response.content) == (200, f"{path.strip('/')} ran".encode())
    assert [name for name, *_ in stepup_urls.RUNS] == [path.strip("/")]


@pytest.mark.usefixtures("no_middleware")
def test_without_the_middleware_an_async_view_demands_a_grant(
    alice: Client, user: Any, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    browser = AsyncClient()
    browser.cookies = alice.cookies
    denied = async_to_sync(browser.get)("/async/")
    assert (denied.status_code, denied["Location"]) == (302, prompt_for("/async/"))
    assert stepup_urls.RUNS == []
    assert AuditEvent.objects.get().data == {"path": "/async/", "method": "GET", "max_age": 300}

    alice.get(prompt_for("/async/"))
    assert confirm(alice, django_capture_on_commit_callbacks, mailoutbox)["Location"] == "/async/"
    allowed = async_to_sync(browser.get)("/async/")
    assert (allowed.status_code, allowed.content) == (200, b"async ran")
    assert stepup_urls.RUNS == [("async", "GET", [], [])]


@pytest.mark.usefixtures("no_middleware")
def test_without_the_middleware_a_post_is_kept_and_replayed_once(
    user: Any, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    kept = browser.post(
        "/transfer/", {"csrfmiddlewaretoken": csrf_token(browser.get("/transfer/form/")), "amount": "250"}
    )
    assert kept.status_code == 302
    location = urlsplit(kept["Location"])
    query = parse_qs(location.query)
    assert (location.path, query["purpose"], query["next"]) == (VERIFY, ["step_up"], ["/transfer/"])
    assert stepup_urls.RUNS == []

    prompt = browser.get(kept["Location"])
    with django_capture_on_commit_callbacks(execute=True):
        browser.post(SEND, {"purpose": "step_up", "csrfmiddlewaretoken": csrf_token(prompt)})
    verified = browser.post(
        VERIFY,
        {
            "purpose": "step_up",
            "code": code_from(mailoutbox[0]),
            "csrfmiddlewaretoken": csrf_token(browser.get(PROMPT)),
        },
    )
    assert (verified.status_code, verified["Location"]) == (302, f"{CONTINUE}?token={query['replay'][0]}")
    [form] = forms_in(browser.get(verified["Location"]))
    done = browser.post(form.action, dict_of(form.fields))
    assert (done.status_code, done.content) == (200, b"transfer ran")
    assert stepup_urls.RUNS == [("transfer", "POST", [("amount", "250")], [])]


# ---------------------------------------------------------------------------------------------------------------
# Both installed: the middleware checks, the view's own guard does not check again


@pytest.mark.parametrize("installed", [True, False], ids=["with-middleware", "without-middleware"])
def test_a_single_use_grant_is_used_once_per_request(
    alice: Client,
    user: Any,
    settings: Any,
    django_capture_on_commit_callbacks: Capture,
    mailoutbox: list[EmailMessage],
    installed: bool,
) -> None:
    if not installed:
        settings.MIDDLEWARE = [name for name in settings.MIDDLEWARE if name != OTP_MIDDLEWARE]
    confirm(alice, django_capture_on_commit_callbacks, mailoutbox, "danger_zone")
    assert alice.get("/danger/").content == b"danger ran"
    # Checked twice, the second check would have found the grant used up and sent this request to the prompt.
    assert events("step_up_used", "step_up_required") == [("step_up_used", "")]
    assert StepUpGrant.objects.get().consumed_at is not None

    again = alice.get("/danger/")
    assert (again.status_code, again["Location"]) == (302, prompt_for("/danger/", "danger_zone"))
    assert events("step_up_used", "step_up_required") == [("step_up_used", ""), ("step_up_required", "")]
    assert [name for name, *_ in stepup_urls.RUNS] == ["danger"]


def test_with_the_middleware_a_refused_request_is_audited_once(alice: Client) -> None:
    assert alice.get("/bare/").status_code == 302
    assert alice.get("/async/").status_code == 302
    assert events() == [("step_up_required", ""), ("step_up_required", "")]


def test_stacked_marks_each_demand_their_grant(
    alice: Client, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    """An outer and an inner @step_up_required with different purposes: both hold, middleware or not."""
    confirm(alice, django_capture_on_commit_callbacks, mailoutbox)
    denied = alice.get("/stacked/")
    assert (denied.status_code, denied["Location"]) == (302, prompt_for("/stacked/", "danger_zone"))
    confirm(alice, django_capture_on_commit_callbacks, mailoutbox, "danger_zone")
    assert alice.get("/stacked/").content == b"stacked ran"
