"""Bound actions through the decorator: ``step_up_required(purpose="payout", single_use=True, action=...)``.

The middleware describes the POST that hit the view ("Send 500 EUR to ACME Ltd"), keeps the text with the kept POST,
the code's email names it, and the grant confirms that action only, once.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import time_machine
from django.contrib.auth import views as auth_views
from django.core.mail import EmailMessage
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import include, path
from django.utils import timezone
from django.views import View

from django_emailotp.crypto import binding_hash
from django_emailotp.decorators import StepUpRequiredMixin, step_up_required
from django_emailotp.models import AuditEvent, Challenge, StepUpGrant
from tests.conftest import code_from
from tests.test_issue import Capture
from tests.test_step_up_views import CONTINUE, VERIFY, confirm, forms_in, send_code

PAYOUT = {"payout": "confirm a payout"}
ACTION = "Send 500 EUR to ACME Ltd"
view_runs: list[tuple[str, list[tuple[str, str]]]] = []


def describe_payout(request: HttpRequest) -> str:
    return f"Send {request.POST.get('amount', '')} EUR to {request.POST.get('payee', '')}"


def _record(name: str, request: HttpRequest) -> HttpResponse:
    fields = [(key, value) for key, values in request.POST.lists() if key != "csrfmiddlewaretoken" for value in values]
    view_runs.append((name, fields))
    return HttpResponse(f"{name} ran", content_type="text/plain")


@step_up_required(purpose="payout", single_use=True, action=describe_payout)
def payout(request: HttpRequest) -> HttpResponse:
    return _record("payout", request)


class PayoutView(StepUpRequiredMixin, View):
    step_up_purpose = "payout"
    step_up_single_use = True
    step_up_action = describe_payout

    def post(self, request: HttpRequest) -> HttpResponse:
        return _record("payout-cbv", request)


@step_up_required(purpose="payout")
def payout_settings(request: HttpRequest) -> HttpResponse:
    """The same purpose without an action: a plain grant."""
    return _record("payout-settings", request)


@step_up_required(purpose="payout", action=lambda request: f"Send {request.POST['amount']} EUR")
def strict_payout(request: HttpRequest) -> HttpResponse:
    """Its describing function indexes the POST: a request without the field cannot be described."""
    return _record("strict", request)


urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("payout/strict/", strict_payout),
    path("payout/", payout),
    path("payout/cbv/", PayoutView.as_view()),
    path("payout/settings/", payout_settings),
    path("otp/", include("django_emailotp.urls")),
]


@pytest.fixture(autouse=True)
def bound_site(settings: Any) -> Iterator[None]:
    settings.ROOT_URLCONF = __name__
    settings.LOGIN_URL = "login"
    settings.LOGIN_REDIRECT_URL = "/"
    settings.EMAIL_OTP_PURPOSES = PAYOUT
    settings.EMAIL_OTP_PROTECTED_URLS = []
    view_runs.clear()
    yield
    view_runs.clear()


@pytest.fixture(name="alice")
def alice_fixture(user: Any, client: Client) -> Client:
    client.force_login(user)
    return client


def dict_of(fields: list[tuple[str, str]]) -> dict[str, str]:
    return dict(fields)


def post_and_confirm(
    client: Client, capture: Capture, outbox: list[EmailMessage], url: str, data: dict[str, str]
) -> list[tuple[str, str]]:
    """POST to the action-bound view, confirm the emailed code; the fields of the re-submit form."""
    kept = client.post(url, data)
    assert kept.status_code == 302
    query = parse_qs(urlsplit(kept["Location"]).query)
    assert (query["purpose"], query["next"]) == (["payout"], [url])
    client.get(kept["Location"])
    verified = confirm(client, capture, outbox, purpose="payout")
    assert verified.status_code == 302
    assert verified["Location"].startswith(CONTINUE)
    [form] = forms_in(client.get(verified["Location"]))
    assert form.action == url
    return form.fields


@pytest.mark.parametrize(("url", "view"), [("/payout/", "payout"), ("/payout/cbv/", "payout-cbv")])
def test_email_names_the_action_and_the_kept_post_runs_once(
    alice: Client,
    user: Any,
    url: str,
    view: str,
    django_capture_on_commit_callbacks: Capture,
    mailoutbox: list[EmailMessage],
) -> None:
    kept = alice.post(url, {"amount": "500", "payee": "ACME Ltd"})
    prompt = alice.get(kept["Location"])
    assert f"The code confirms only this action: {ACTION}" in prompt.content.decode()
    assert view_runs == []

    fields = post_and_confirm_after_prompt(alice, django_capture_on_commit_callbacks, mailoutbox)
    [message] = mailoutbox
    assert f"It confirms only this action: {ACTION}" in message.body
    assert ACTION not in message.subject
    assert "500" not in message.subject
    challenge = Challenge.objects.get()
    assert (challenge.purpose, challenge.action) == ("payout", ACTION)

    done = alice.post(url, dict_of(fields))
    assert done.content == f"{view} ran".encode()
    assert view_runs == [(view, [("amount", "500"), ("payee", "ACME Ltd")])]

    # The grant keeps a keyed digest of the action, not the text, and it is used up.
    grant = StepUpGrant.objects.get()
    assert grant.action_digest == binding_hash("action:" + ACTION)
    assert grant.consumed_at is not None
    assert ACTION not in str(list(StepUpGrant.objects.values_list()))
    used = AuditEvent.objects.get(event="step_up_used")
    assert (used.user_id, used.purpose, used.data) == (user.pk, "payout", {"path": url})

    # Single use: the same form again is prompted again and the view does not run a second time.
    again = alice.post(url, dict_of(fields))
    assert again.status_code == 302
    assert parse_qs(urlsplit(again["Location"]).query)["purpose"] == ["payout"]
    assert len(view_runs) == 1


def post_and_confirm_after_prompt(
    client: Client, capture: Capture, outbox: list[EmailMessage]
) -> list[tuple[str, str]]:
    """On the prompt already: send, enter the code, take the re-submit form's fields."""
    verified = confirm(client, capture, outbox, purpose="payout")
    assert verified["Location"].startswith(CONTINUE)
    [form] = forms_in(client.get(verified["Location"]))
    return form.fields


def test_changed_amount_after_confirming_is_prompted_again(
    alice: Client, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    fields = dict_of(
        post_and_confirm(
            alice,
            django_capture_on_commit_callbacks,
            mailoutbox,
            "/payout/",
            {
                "amount": "500",
                "payee": "ACME Ltd",
            },
        )
    )
    tampered = alice.post("/payout/", fields | {"amount": "5000"})
    assert tampered.status_code == 302
    assert parse_qs(urlsplit(tampered["Location"]).query)["purpose"] == ["payout"]
    assert view_runs == []
    # No grant matched, so none was used: the confirmed request still goes through, once.
    assert StepUpGrant.objects.get().consumed_at is None
    assert alice.post("/payout/", fields).content == b"payout ran"
    assert view_runs == [("payout", [("amount", "500"), ("payee", "ACME Ltd")])]
    # The tampered POST was kept for its own confirmation, which names its own amount.
    alice.get(tampered["Location"])
    send_code(alice, django_capture_on_commit_callbacks, "payout")
    assert "It confirms only this action: Send 5000 EUR to ACME Ltd" in mailoutbox[-1].body


def test_plain_and_action_grants_do_not_stand_in_for_each_other(
    alice: Client, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    # A plain payout grant (code sent from the prompt, no kept POST): the email names no action.
    alice.get(VERIFY, {"purpose": "payout"})
    verified = confirm(alice, django_capture_on_commit_callbacks, mailoutbox, purpose="payout")
    assert verified.status_code == 302
    assert "confirms only this action" not in mailoutbox[-1].body
    assert StepUpGrant.objects.get().action_digest == ""
    assert alice.post("/payout/", {"amount": "500", "payee": "ACME Ltd"}).status_code == 302
    assert view_runs == []

    # An action grant does not open the purpose's plain views either.
    fields = post_and_confirm(
        alice, django_capture_on_commit_callbacks, mailoutbox, "/payout/", {"amount": "500", "payee": "ACME Ltd"}
    )
    assert alice.post("/payout/settings/").status_code == 302
    assert alice.post("/payout/", dict_of(fields)).content == b"payout ran"
    assert [name for name, _ in view_runs] == ["payout"]


def test_action_comes_only_from_the_kept_post(
    alice: Client, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    kept = alice.post("/payout/", {"amount": "500", "payee": "ACME Ltd"})
    token = parse_qs(urlsplit(kept["Location"]).query)["replay"][0]
    # A query parameter cannot name an action, and another token finds none.
    alice.get(VERIFY, {"purpose": "payout", "next": "/payout/", "replay": "forged", "action": "Send 1 EUR to Me"})
    send_code(alice, django_capture_on_commit_callbacks, "payout")
    assert Challenge.objects.get().action == ""
    assert "confirms only this action" not in mailoutbox[-1].body
    # The kept POST's token gives the action it was saved with.
    alice.get(VERIFY, {"purpose": "payout", "next": "/payout/", "replay": token, "action": "Send 1 EUR to Me"})
    send_after_cooldown(alice, django_capture_on_commit_callbacks)
    assert Challenge.objects.filter(status="pending").get().action == ACTION
    assert f"It confirms only this action: {ACTION}" in mailoutbox[-1].body
    code = code_from(mailoutbox[-1])
    assert alice.post(VERIFY, {"purpose": "payout", "code": code}).status_code == 302
    assert StepUpGrant.objects.get().action_digest == binding_hash("action:" + ACTION)


def send_after_cooldown(client: Client, capture: Capture) -> None:
    """Press "Send code" again once the resend cooldown is over."""
    with time_machine.travel(timezone.now() + timedelta(seconds=61), tick=False):
        assert send_code(client, capture, "payout").status_code == 302


def test_json_clients_are_held_to_the_action_the_same_way(
    alice: Client, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    """The view computes the action from the JSON client's request just as from a browser's form."""
    json = {"accept": "application/json"}
    refused = alice.post("/payout/", {"amount": "500", "payee": "ACME Ltd"}, headers=json)
    assert refused.status_code == 401
    assert refused.json()["error"] == "step_up_required"
    post_and_confirm(
        alice,
        django_capture_on_commit_callbacks,
        mailoutbox,
        "/payout/",
        {
            "amount": "500",
            "payee": "ACME Ltd",
        },
    )
    assert alice.post("/payout/", {"amount": "501", "payee": "ACME Ltd"}, headers=json).status_code == 401
    assert alice.post("/payout/", {"amount": "500", "payee": "ACME Ltd"}, headers=json).content == b"payout ran"
    assert alice.post("/payout/", {"amount": "500", "payee": "ACME Ltd"}, headers=json).status_code == 401
    assert view_runs == [("payout", [("amount", "500"), ("payee", "ACME Ltd")])]


def test_a_request_the_action_cannot_describe_is_a_400_not_a_500(alice: Client) -> None:
    """A describing function that reads request.POST["amount"]; a POST without it is refused cleanly."""
    response = alice.post("/payout/strict/", {"payee": "ACME Ltd"})
    assert response.status_code == 400
    assert view_runs == []
