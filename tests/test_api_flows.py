"""The second factor at login, email verification and change, and bound actions through the REST API.

Login: password (200 logged in, or 202 and a code), then login/verify/ or login/backup-code/; CSRF-checked although
anonymous. Email: email/ (a change needs a fresh step-up) then email/verify/, with session and token clients.
Bound actions: a code issued with ``action`` opens only a DRF view whose StepUpRequired describes that action.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth import SESSION_KEY
from django.test import Client
from django.urls import path
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from django_emailotp import services
from django_emailotp.api.permissions import StepUpRequired
from django_emailotp.models import AuditEvent, Challenge, ChallengeStatus, Lockout, SecondFactor, VerifiedEmail
from tests import api_urls
from tests.conftest import code_from
from tests.test_api import (  # noqa: F401  (fixtures)
    NOT_RIGHT,
    SEE_FIELDS,
    Api,
    Flow,
    api_fixture,
    clock_fixture,
    flow_fixture,
    session_api,
    token_api,
)
from tests.test_api_step_up import assert_step_up_required
from tests.test_issue import wrong_code

LOGIN = "/api/otp/login/"
LOGIN_VERIFY = "/api/otp/login/verify/"
LOGIN_BACKUP = "/api/otp/login/backup-code/"
EMAIL = "/api/otp/email/"
EMAIL_VERIFY = "/api/otp/email/verify/"
CHALLENGES = "/api/otp/challenges/"
PAYOUT = "/api/payout/"
PASSWORD = "correct horse battery staple"
INVALID_CREDENTIALS = "That username and password do not match an active account."
ACTION = "Send 500 EUR to ACME Ltd"

payouts: list[str] = []


class Payout(APIView):
    """A DRF view that asks for a single-use grant whose code confirmed the payout this request describes."""

    authentication_classes = api_urls.AUTHENTICATION
    permission_classes = (
        IsAuthenticated,
        StepUpRequired.with_options(
            purpose="payout", single_use=True, action=lambda request: f"Send {request.data['amount']} EUR to ACME Ltd"
        ),
    )

    def post(self, request: Request) -> Response:
        data: Any = request.data
        amount = str(data["amount"])
        payouts.append(amount)
        return Response({"paid": amount})


urlpatterns = [*api_urls.urlpatterns, path("api/payout/", Payout.as_view())]


@pytest.fixture(autouse=True)
def _site(settings: Any) -> Iterator[None]:
    settings.ROOT_URLCONF = __name__
    settings.LOGIN_URL = "login"
    settings.EMAIL_OTP_PURPOSES = {"payout": "confirm a payout"}
    settings.EMAIL_OTP_PROTECTED_URLS = []
    settings.EMAIL_OTP_LOGIN_POLICY = "optional"
    settings.EMAIL_OTP_TRUSTED_DEVICE_DAYS = 0
    payouts.clear()
    yield
    payouts.clear()


def anonymous() -> Api:
    """A browser that has not logged in: CSRF enforced, the token read from the cookie GET login/ sets."""
    client = Client(enforce_csrf_checks=True)
    status = client.get(LOGIN)
    assert (status.status_code, status.json()) == (200, {"logged_in": False})
    return Api(client, "session", {"X-CSRFToken": client.cookies["csrftoken"].value})


def password_step(api: Api, flow: Flow, password: str = PASSWORD) -> Any:
    with flow.capture(execute=True):
        return api.post(LOGIN, {"username": "alice", "password": password})


def events(*names: str) -> list[tuple[str, str]]:
    rows = AuditEvent.objects.filter(event__in=names).order_by("id")
    return list(rows.values_list("event", "reason"))


# ---------------------------------------------------------------------------------------------------------------
# Second factor at login


def test_password_alone_logs_in_without_a_second_factor(user: Any, flow: Flow) -> None:
    api = anonymous()
    response = password_step(api, flow)
    assert (response.status_code, response.json()) == (200, {"logged_in": True})
    assert "no-store" in response["Cache-Control"]
    assert api.client.session[SESSION_KEY] == str(user.pk)
    assert Challenge.objects.count() == 0
    assert flow.outbox == []
    assert api.get(LOGIN).json() == {"logged_in": True}


def test_a_token_comes_with_the_login_when_configured(user: Any, flow: Flow, settings: Any) -> None:
    settings.EMAIL_OTP_API_SIGN_IN_TOKEN = True
    response = password_step(anonymous(), flow)
    assert response.status_code == 200
    assert response.json() == {"logged_in": True, "token": Token.objects.get(user=user).key}


def test_wrong_password_is_400_invalid_credentials(user: Any, flow: Flow) -> None:
    api = anonymous()
    response = password_step(api, flow, password="wrong")
    assert (response.status_code, response.json()) == (
        400,
        {"error": "invalid_credentials", "message": INVALID_CREDENTIALS},
    )
    missing = api.post(LOGIN, {"username": "alice"})
    assert missing.status_code == 400
    assert missing.json() == {
        "error": "malformed",
        "message": SEE_FIELDS,
        "field_errors": {"password": ["This field is required."]},
    }
    assert SESSION_KEY not in api.client.session


def test_login_is_csrf_protected_although_anonymous(user: Any, flow: Flow) -> None:
    api = anonymous()
    with flow.capture(execute=True):
        refused = api.post(LOGIN, {"username": "alice", "password": PASSWORD}, headers={"X-CSRFToken": ""})
    assert refused.status_code == 403
    assert refused.json()["error"] == "permission_denied"
    assert refused.json()["message"].startswith("CSRF Failed")
    assert SESSION_KEY not in api.client.session
    for url in (LOGIN_VERIFY, LOGIN_BACKUP):
        assert api.post(url, {"code": "123456"}, headers={"X-CSRFToken": ""}).status_code == 403


def test_second_factor_then_the_code_logs_in(
    user: Any, flow: Flow, clock: time_machine.Traveller, settings: Any
) -> None:
    settings.EMAIL_OTP_API_SIGN_IN_TOKEN = True
    SecondFactor.objects.create(user=user, enabled=True)
    api = anonymous()
    response = password_step(api, flow)
    challenge = Challenge.objects.get()
    assert response.status_code == 202
    assert response.json() == {
        "id": str(challenge.pk),
        "purpose": "login",
        "expires_at": "2026-03-02T09:05:00Z",
        "resend_available_at": "2026-03-02T09:01:00Z",
        "email_hint": "a***@example.com",
        "second_factor_required": True,
    }
    code = code_from(flow.outbox[0])
    assert SESSION_KEY not in api.client.session
    assert api.get(LOGIN).json() == {"logged_in": False}
    assert Token.objects.count() == 0

    wrong = api.post(LOGIN_VERIFY, {"code": wrong_code(code)})
    assert (wrong.status_code, wrong.json()) == (
        400,
        {"error": "invalid_code", "message": NOT_RIGHT, "attempts_remaining": 4},
    )
    assert SESSION_KEY not in api.client.session

    right = api.post(LOGIN_VERIFY, {"code": code})
    assert (right.status_code, right.json()) == (200, {"logged_in": True, "token": Token.objects.get(user=user).key})
    assert api.client.session[SESSION_KEY] == str(user.pk)
    # login() rotated the CSRF token, as Django's LoginView does: the old one is refused now.
    assert api.post(LOGIN_VERIFY, {"code": code}).status_code == 403
    api.headers["X-CSRFToken"] = api.client.cookies["csrftoken"].value
    assert Challenge.objects.get().status == ChallengeStatus.VERIFIED
    assert AuditEvent.objects.get(event="login_completed").data == {"method": "email_code"}
    # The login is finished: the same code again has no pending login to finish.
    assert api.post(LOGIN_VERIFY, {"code": code}).json()["error"] == "invalid_code"


def test_the_code_works_only_in_the_session_that_entered_the_password(user: Any, flow: Flow) -> None:
    SecondFactor.objects.create(user=user, enabled=True)
    password_step(anonymous(), flow)
    other = anonymous()
    response = other.post(LOGIN_VERIFY, {"code": code_from(flow.outbox[0])})
    assert (response.status_code, response.json()["error"]) == (400, "invalid_code")
    assert SESSION_KEY not in other.client.session
    assert Challenge.objects.get().status == ChallengeStatus.PENDING


def test_malformed_code_costs_no_attempt(user: Any, flow: Flow) -> None:
    SecondFactor.objects.create(user=user, enabled=True)
    api = anonymous()
    password_step(api, flow)
    response = api.post(LOGIN_VERIFY, {"code": "12345x"})
    assert (response.status_code, response.json()["error"]) == (400, "malformed")
    assert Challenge.objects.get().attempts == 0


def test_lockout_is_429_and_a_backup_code_still_logs_in(
    user: Any, flow: Flow, clock: time_machine.Traveller, settings: Any
) -> None:
    SecondFactor.objects.create(user=user, enabled=True)
    with flow.capture(execute=True):
        [backup_code, second, *_] = services.regenerate_backup_codes(user)
    Lockout.objects.create(user=user, scope="login", locked_until=timezone.now() + timedelta(minutes=15), lock_count=1)
    flow.outbox.clear()
    api = anonymous()
    locked = password_step(api, flow)
    assert locked.status_code == 429
    assert locked["Retry-After"] == "900"
    assert (locked.json()["error"], locked.json()["retry_after"]) == ("locked_out", 900)
    assert flow.outbox == []
    assert SESSION_KEY not in api.client.session

    wrong = api.post(LOGIN_BACKUP, {"code": "AAAAA-AAAAA"})
    assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_backup_code")
    with flow.capture(execute=True):
        done = api.post(LOGIN_BACKUP, {"code": backup_code.lower()})
    assert (done.status_code, done.json()) == (200, {"logged_in": True})
    assert api.client.session[SESSION_KEY] == str(user.pk)
    assert AuditEvent.objects.get(event="login_completed").data == {"method": "backup_code"}
    assert flow.outbox[-1].subject == "Example: a backup code was used"
    # No pending login any more: a second backup code finishes nothing and stays unused.
    assert anonymous().post(LOGIN_BACKUP, {"code": second}).json()["error"] == "invalid_backup_code"
    assert services.backup_codes_remaining(user) == 9


# ---------------------------------------------------------------------------------------------------------------
# Email verification and change


# Email-verification codes are sent from a thread of their own, which needs committed rows.
EMAILED_IN_BACKGROUND = pytest.mark.django_db(transaction=True)


def send_email_code(api: Api, flow: Flow, body: dict[str, Any]) -> tuple[Any, str | None]:
    sent = len(flow.outbox)
    with flow.capture(execute=True):
        response = api.post(EMAIL, body)
    services.wait_for_background_sends()  # email codes are sent off the request's thread
    return response, code_from(flow.outbox[-1]) if len(flow.outbox) > sent else None


@EMAILED_IN_BACKGROUND
def test_verify_the_accounts_own_address(api: Api, user: Any, flow: Flow) -> None:
    response, code = send_email_code(api, flow, {})
    challenge = Challenge.objects.get()
    assert response.status_code == 202
    assert response.json() == {
        "id": str(challenge.pk),
        "purpose": "verify_email",
        "expires_at": "2026-03-02T09:05:00Z",
        "resend_available_at": "2026-03-02T09:01:00Z",
        "email_hint": "a***@example.com",
    }
    assert flow.outbox[-1].to == ["alice@example.com"]
    assert code is not None
    wrong = api.post(EMAIL_VERIFY, {"code": wrong_code(code)})
    assert (wrong.status_code, wrong.json()) == (
        400,
        {"error": "invalid_code", "message": NOT_RIGHT, "attempts_remaining": 4},
    )
    assert not VerifiedEmail.objects.exists()
    right = api.post(EMAIL_VERIFY, {"code": code})
    assert (right.status_code, right.json()) == (
        200,
        {"verified": True, "email": "alice@example.com", "changed": False},
    )
    assert list(VerifiedEmail.objects.values_list("user_id", "email")) == [(user.pk, "alice@example.com")]
    used = api.post(EMAIL_VERIFY, {"code": code})
    assert (used.status_code, used.json()["error"]) == (400, "used")


def test_verify_without_a_code_request_answers_like_a_wrong_code(api: Api, user: Any) -> None:
    response = api.post(EMAIL_VERIFY, {"code": "123456"})
    assert (response.status_code, response.json()) == (
        400,
        {"error": "invalid_code", "message": NOT_RIGHT, "attempts_remaining": 4},
    )


@EMAILED_IN_BACKGROUND
def test_the_code_is_bound_to_the_client_that_asked(user: Any, flow: Flow, clock: time_machine.Traveller) -> None:
    asked = token_api(user)
    _, code = send_email_code(asked, flow, {})
    other = session_api(user)
    assert other.post(EMAIL_VERIFY, {"code": code}).json()["error"] == "invalid_code"
    assert Challenge.objects.get().attempts == 0  # another client's code is never tried
    assert asked.post(EMAIL_VERIFY, {"code": code}).status_code == 200


@EMAILED_IN_BACKGROUND
def test_a_change_needs_a_fresh_step_up_then_changes_the_address(
    api: Api, user: Any, flow: Flow, clock: time_machine.Traveller
) -> None:
    refused, _ = send_email_code(api, flow, {"email": "new@example.com", "change": True})
    assert_step_up_required(refused, api)
    assert Challenge.objects.count() == 0

    flow.step_up(api)
    response, code = send_email_code(api, flow, {"email": "new@example.com", "change": True})
    assert response.status_code == 202
    assert response.json()["email_hint"] == "n***@example.com"
    assert flow.outbox[-1].to == ["new@example.com"]
    right = api.post(EMAIL_VERIFY, {"code": code})
    assert (right.status_code, right.json()) == (200, {"verified": True, "email": "new@example.com", "changed": True})
    user.refresh_from_db()
    assert user.email == "new@example.com"
    assert flow.outbox[-1].to == ["alice@example.com"]
    assert code is not None
    assert code not in str(flow.outbox[-1].body)
    assert events("email_verified", "email_changed") == [("email_verified", ""), ("email_changed", "")]


@EMAILED_IN_BACKGROUND
def test_a_newer_request_supersedes_the_code(api: Api, user: Any, flow: Flow, clock: time_machine.Traveller) -> None:
    _, first = send_email_code(api, flow, {"email": "one@example.com"})
    clock.shift(timedelta(seconds=61))
    _, second = send_email_code(api, flow, {"email": "two@example.com"})
    assert api.post(EMAIL_VERIFY, {"code": first}).status_code == 400
    right = api.post(EMAIL_VERIFY, {"code": second})
    assert right.json() == {"verified": True, "email": "two@example.com", "changed": False}


def test_bad_addresses_are_malformed(api: Api, user: Any, flow: Flow) -> None:
    for body in ({"email": "not an address"}, {"email": "a@example.com\nBcc: b@example.com"}, {"change": True}):
        response, _ = send_email_code(api, flow, body)
        assert response.status_code == 400, body
        assert response.json() == {
            "error": "malformed",
            "message": SEE_FIELDS,
            "field_errors": {"email": ["Enter a valid email address."]},
        }
    assert Challenge.objects.count() == 0
    assert flow.outbox == []


@EMAILED_IN_BACKGROUND
def test_an_address_taken_meanwhile_is_409(
    api: Api, user: Any, other_user: Any, flow: Flow, clock: time_machine.Traveller
) -> None:
    flow.step_up(api)
    _, code = send_email_code(api, flow, {"email": "taken@example.com", "change": True})
    other_user.email = "taken@example.com"
    other_user.save()
    response = api.post(EMAIL_VERIFY, {"code": code})
    assert response.status_code == 409
    assert response.json() == {
        "error": "email_in_use",
        "message": "That address is already used by another account; nothing was changed.",
    }
    user.refresh_from_db()
    assert user.email == "alice@example.com"


def test_email_endpoints_need_a_signed_in_client(db: None) -> None:
    client = Client()
    assert client.post(EMAIL, {}, content_type="application/json").status_code == 403
    assert client.post(EMAIL_VERIFY, {"code": "123456"}, content_type="application/json").status_code == 403


# ---------------------------------------------------------------------------------------------------------------
# Bound actions


def confirm_action(api: Api, flow: Flow, action: str | None) -> None:
    body = {"purpose": "payout"} | ({"action": action} if action is not None else {})
    with flow.capture(execute=True):
        created = api.post(CHALLENGES, body)
    assert created.status_code == 202, created.content
    verified = api.post(f"{CHALLENGES}{created.json()['id']}/verify/", {"code": code_from(flow.outbox[-1])})
    assert verified.status_code == 200, verified.content


def test_a_code_for_an_action_opens_only_that_action_once(
    api: Api, user: Any, flow: Flow, clock: time_machine.Traveller
) -> None:
    confirm_action(api, flow, ACTION)
    assert f"It confirms only this action: {ACTION}" in flow.outbox[-1].body
    assert Challenge.objects.get().action == ACTION

    other_amount = api.post(PAYOUT, {"amount": "5000"})
    assert_step_up_required(other_amount, api, purpose="payout")
    paid = api.post(PAYOUT, {"amount": "500"})
    assert (paid.status_code, paid.json()) == (200, {"paid": "500"})
    again = api.post(PAYOUT, {"amount": "500"})
    assert_step_up_required(again, api, purpose="payout")
    assert payouts == ["500"]


def test_a_plain_grant_does_not_open_an_action_view(
    api: Api, user: Any, flow: Flow, clock: time_machine.Traveller
) -> None:
    confirm_action(api, flow, None)
    assert_step_up_required(api.post(PAYOUT, {"amount": "500"}), api, purpose="payout")
    assert payouts == []


def test_a_request_the_action_cannot_describe_is_400(
    api: Api, user: Any, flow: Flow, clock: time_machine.Traveller
) -> None:
    confirm_action(api, flow, ACTION)
    response = api.post(PAYOUT, {})
    # A project's own view: DRF's error body (a ParseError), not a server error.
    assert (response.status_code, response.json()) == (
        400,
        {"detail": "This request lacks what its confirmation must describe."},
    )
    assert payouts == []
    assert api.post(PAYOUT, {"amount": "500"}).status_code == 200


def test_the_action_is_at_most_500_characters(api: Api, user: Any, flow: Flow) -> None:
    response = api.post(CHALLENGES, {"purpose": "payout", "action": "x" * 501})
    assert response.status_code == 400
    assert response.json()["field_errors"] == {"action": ["Ensure this field has no more than 500 characters."]}
    assert Challenge.objects.count() == 0
