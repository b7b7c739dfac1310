"""The REST API through the HTTP client, with session authentication (CSRF enforced) and DRF token authentication:
every endpoint, every error code, credential binding, and bad input that must never reach a 5xx or write a row.

The fixtures and helpers at the top are shared by the other API test modules.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.core.mail import EmailMessage
from django.test import Client
from rest_framework.authtoken.models import Token

from django_emailotp.crypto import binding_hash
from django_emailotp.models import AuditEvent, Challenge, ChallengeStatus, StepUpGrant
from django_emailotp.requestinfo import SESSION_BINDING_KEY
from tests import api_urls
from tests.conftest import code_from
from tests.factories import UserFactory
from tests.test_issue import T0, Capture, wrong_code

CHALLENGES = "/api/otp/challenges/"
STEP_UP = "/api/otp/step-up/"
DANGER_ZONE = {"danger_zone": "confirm a change in the danger zone"}
Response = Any  # the test client's response, with .json()

NOT_RIGHT = "That code is not right. Check the latest email and try again."
EXPIRED = "That code has expired. Ask for a new one."
USED = "That code has already been used. Ask for a new one."
BURNED = "Too many wrong attempts: that code no longer works. Ask for a new one."
SUPERSEDED = "A newer code was sent. Use the code from the latest email."
DIGITS_ONLY = "Enter the code as digits only, for example 123456."
UNKNOWN_PURPOSE = "This confirmation is not available."
SEE_FIELDS = "The request is not valid; see fields."


def verify_url(challenge_id: object) -> str:
    return f"{CHALLENGES}{challenge_id}/verify/"


def resend_url(challenge_id: object) -> str:
    return f"{CHALLENGES}{challenge_id}/resend/"


def iso(moment: Any) -> str:
    """How DRF writes a UTC datetime."""
    return moment.isoformat().replace("+00:00", "Z")


@dataclass
class Api:
    """One API client: a browser session (CSRF token in the header) or a DRF token (``Authorization: Token``)."""

    client: Client
    kind: str
    headers: dict[str, str] = field(default_factory=dict)
    token: Token | None = None
    prefix: str = CHALLENGES

    def post(self, path: str, data: Any = None, **kwargs: Any) -> Response:
        kwargs.setdefault("content_type", "application/json")
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return self.client.post(path, data, headers=headers, **kwargs)

    def get(self, path: str, data: Any = None, **kwargs: Any) -> Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return self.client.get(path, data, headers=headers, **kwargs)

    @property
    def binding(self) -> str:
        """The keyed hash the engine stores for this client's session or credential."""
        if self.token is not None:
            return binding_hash(f"credential:{self.token.key}")
        return binding_hash(f"session:{self.client.session[SESSION_BINDING_KEY]}")


def session_api(user: Any) -> Api:
    """A signed-in browser session that enforces CSRF, holding the token an SPA reads from /csrf/."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    token = client.get("/csrf/").json()["csrf_token"]
    return Api(client, "session", {"X-CSRFToken": token})


def token_api(user: Any, token: Token | None = None) -> Api:
    """A client with no cookies that authenticates every request with a DRF token."""
    token = token or Token.objects.create(user=user)
    return Api(Client(enforce_csrf_checks=True), "token", {"Authorization": f"Token {token.key}"}, token)


@dataclass
class Flow:
    """Sends and reads codes through the API, letting the after-commit delivery run in-process."""

    capture: Capture
    outbox: list[EmailMessage]

    def create(self, api: Api, purpose: str = "step_up") -> tuple[dict[str, Any], str]:
        """POST challenges/ -> (the 202 body, the code from the email)."""
        sent = len(self.outbox)
        with self.capture(execute=True):
            response = api.post(api.prefix, {"purpose": purpose})
        assert response.status_code == 202, response.content
        assert len(self.outbox) == sent + 1
        return response.json(), code_from(self.outbox[-1])

    def resend(self, api: Api, challenge_id: str) -> tuple[Response, str | None]:
        sent = len(self.outbox)
        with self.capture(execute=True):
            response = api.post(resend_url(challenge_id))
        return response, code_from(self.outbox[-1]) if len(self.outbox) > sent else None

    def step_up(self, api: Api, purpose: str = "step_up") -> dict[str, Any]:
        """Send a code and verify it: the 200 body."""
        body, code = self.create(api, purpose)
        response = api.post(f"{api.prefix}{body['id']}/verify/", {"code": code})
        assert response.status_code == 200, response.content
        return response.json()


def events(*names: str) -> list[tuple[str, str]]:
    """(event, reason) of the audit rows of the given types, oldest first."""
    rows = AuditEvent.objects.order_by("id")
    if names:
        rows = rows.filter(event__in=names)
    return list(rows.values_list("event", "reason"))


def row_counts() -> tuple[int, int, int]:
    return Challenge.objects.count(), StepUpGrant.objects.count(), AuditEvent.objects.count()


@pytest.fixture(autouse=True, name="api_site")
def api_site_fixture(settings: Any) -> Iterator[None]:
    """The API test URLconf, the danger_zone purpose, no URL patterns, a clean record of view runs."""
    settings.ROOT_URLCONF = "tests.api_urls"
    settings.LOGIN_URL = "login"
    settings.EMAIL_OTP_PURPOSES = DANGER_ZONE
    settings.EMAIL_OTP_PROTECTED_URLS = []
    api_urls.view_runs.clear()
    api_urls.BEARER_KEYS.clear()
    yield
    api_urls.view_runs.clear()
    api_urls.BEARER_KEYS.clear()


@pytest.fixture(name="clock")
def clock_fixture() -> Iterator[time_machine.Traveller]:
    """Time stands at T0 (and moves only when a test shifts it), from before anyone signs in."""
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@pytest.fixture(name="flow")
def flow_fixture(django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]) -> Flow:
    return Flow(django_capture_on_commit_callbacks, mailoutbox)


@pytest.fixture(name="api", params=["session", "token"])
def api_fixture(request: pytest.FixtureRequest, clock: time_machine.Traveller, user: Any) -> Api:
    """alice, signed in with a session (CSRF enforced) or with a DRF token."""
    return session_api(user) if request.param == "session" else token_api(user)


@pytest.fixture(name="bob_api")
def bob_api_fixture(clock: time_machine.Traveller, other_user: Any) -> Api:
    return token_api(other_user)


# ---------------------------------------------------------------------------------------------------------------
# The endpoint table


def test_create_answers_202_with_the_challenge(api: Api, user: Any, flow: Flow) -> None:
    with flow.capture(execute=True):
        response = api.post(CHALLENGES, {"purpose": "step_up"})
    assert response.status_code == 202
    assert response["Content-Type"] == "application/json"
    assert "no-store" in response["Cache-Control"]
    challenge = Challenge.objects.get()
    assert response.json() == {
        "id": str(challenge.pk),
        "purpose": "step_up",
        "expires_at": "2026-03-02T09:05:00Z",
        "resend_available_at": "2026-03-02T09:01:00Z",
        "email_hint": "a***@example.com",
    }
    assert (challenge.user_id, challenge.email, challenge.purpose, challenge.status) == (
        user.pk,
        "alice@example.com",
        "step_up",
        ChallengeStatus.PENDING,
    )
    # Bound to the credential that asked: the session's nonce, or the token.
    assert challenge.binding == api.binding
    assert [message.to for message in flow.outbox] == [["alice@example.com"]]
    assert events() == [("challenge_issued", ""), ("challenge_sent", "")]
    assert AuditEvent.objects.filter(session_hash=api.binding).count() == 1  # the issue; the send has no request


def test_create_for_a_registered_purpose(api: Api, flow: Flow) -> None:
    body, _code = flow.create(api, "danger_zone")
    assert body["purpose"] == "danger_zone"
    assert Challenge.objects.get().purpose == "danger_zone"


def test_verify_answers_200_and_grants_step_up(api: Api, user: Any, flow: Flow) -> None:
    body, code = flow.create(api)
    response = api.post(verify_url(body["id"]), {"code": code})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    assert response.json() == {"verified": True, "purpose": "step_up", "step_up_expires_at": "2026-03-02T09:05:00Z"}
    challenge = Challenge.objects.get()
    assert (challenge.status, challenge.consumed_at, challenge.code_hash) == (ChallengeStatus.VERIFIED, T0, "")
    grant = StepUpGrant.objects.get()
    assert (grant.user_id, grant.purpose, grant.challenge_id, grant.binding) == (
        user.pk,
        "step_up",
        challenge.pk,
        api.binding,
    )
    assert (grant.verified_at, grant.expires_at, grant.consumed_at) == (T0, T0 + timedelta(seconds=300), None)
    assert events() == [
        ("challenge_issued", ""),
        ("challenge_sent", ""),
        ("verify_succeeded", ""),
        ("step_up_granted", ""),
    ]


def test_verify_accepts_spaces_and_hyphens(api: Api, flow: Flow) -> None:
    body, code = flow.create(api)
    response = api.post(verify_url(body["id"]), {"code": f" {code[:3]}-{code[3:]} "})
    assert (response.status_code, response.json()["verified"]) == (200, True)


def test_resend_answers_202_and_supersedes_the_old_code(api: Api, clock: time_machine.Traveller, flow: Flow) -> None:
    first, old_code = flow.create(api)
    clock.shift(61)
    response, new_code = flow.resend(api, first["id"])
    assert response.status_code == 202
    new = Challenge.objects.exclude(pk=first["id"]).get()
    assert response.json() == {
        "id": str(new.pk),
        "purpose": "step_up",
        "expires_at": "2026-03-02T09:06:01Z",
        "resend_available_at": "2026-03-02T09:02:01Z",
        "email_hint": "a***@example.com",
    }
    assert Challenge.objects.get(pk=first["id"]).status == ChallengeStatus.SUPERSEDED
    assert new.binding == api.binding
    assert new_code is not None
    stale = api.post(verify_url(first["id"]), {"code": old_code})
    assert (stale.status_code, stale.json()) == (
        400,
        {"error": "superseded", "message": SUPERSEDED, "attempts_remaining": 0},
    )
    assert api.post(verify_url(new.pk), {"code": new_code}).status_code == 200


def test_creating_again_supersedes_too(api: Api, clock: time_machine.Traveller, flow: Flow) -> None:
    first, old_code = flow.create(api)
    clock.shift(61)
    second, new_code = flow.create(api)
    assert second["id"] != first["id"]
    response = api.post(verify_url(first["id"]), {"code": old_code})
    assert (response.status_code, response.json()["error"]) == (400, "superseded")
    assert api.post(verify_url(second["id"]), {"code": new_code}).status_code == 200


def test_step_up_status_before_and_after(api: Api, clock: time_machine.Traveller, flow: Flow) -> None:
    before = api.get(STEP_UP)
    assert (before.status_code, before.json()) == (200, {"verified": False, "expires_at": None, "max_age": 300})
    assert "no-store" in before["Cache-Control"]
    assert api.get(STEP_UP, {"purpose": "step_up"}).json() == before.json()

    flow.step_up(api)
    fresh = {"verified": True, "expires_at": "2026-03-02T09:05:00Z", "max_age": 300}
    assert api.get(STEP_UP).json() == fresh
    assert api.get(STEP_UP, {"purpose": "step_up"}).json() == fresh
    assert api.get(STEP_UP, {"max_age": "60"}).json() == {**fresh, "max_age": 60}
    # The grant is for step_up only.
    assert api.get(STEP_UP, {"purpose": "danger_zone"}).json() == {
        "verified": False,
        "expires_at": None,
        "max_age": 300,
    }

    clock.shift(61)  # older than a 60 s requirement, inside the default window
    assert api.get(STEP_UP, {"max_age": "60"}).json() == {"verified": False, "expires_at": None, "max_age": 60}
    assert api.get(STEP_UP).json() == fresh
    clock.shift(240)  # past the window
    assert api.get(STEP_UP).json() == {"verified": False, "expires_at": None, "max_age": 300}
    # Asking never changes anything (no sliding, no consumption) and audits nothing.
    assert StepUpGrant.objects.get().consumed_at is None
    assert events("step_up_required", "step_up_used") == []


def test_step_up_status_for_a_project_purpose(api: Api, flow: Flow) -> None:
    flow.step_up(api, "danger_zone")
    assert api.get(STEP_UP, {"purpose": "danger_zone"}).json() == {
        "verified": True,
        "expires_at": "2026-03-02T09:05:00Z",
        "max_age": 300,
    }
    assert api.get(STEP_UP).json()["verified"] is False


@pytest.mark.parametrize("purpose", ["login", "sign_in", "verify_email", "nope", ""])
def test_step_up_status_refuses_other_purposes(api: Api, purpose: str) -> None:
    response = api.get(STEP_UP, {"purpose": purpose})
    assert (response.status_code, response.json()) == (
        400,
        {"error": "unsupported_purpose", "message": UNKNOWN_PURPOSE},
    )


@pytest.mark.parametrize("max_age", ["0", "-5", "86401", "abc", "1.5", "١٢", ""])
def test_step_up_status_refuses_a_bad_max_age(api: Api, max_age: str) -> None:
    response = api.get(STEP_UP, {"max_age": max_age})
    assert (response.status_code, response.json()) == (
        400,
        {"error": "malformed", "message": "max_age must be a whole number of seconds from 1 to 86400."},
    )


# ---------------------------------------------------------------------------------------------------------------
# Error codes of verification


def test_invalid_code_counts_down_then_burns(api: Api, flow: Flow) -> None:
    body, code = flow.create(api)
    for left in (4, 3, 2, 1, 0):
        response = api.post(verify_url(body["id"]), {"code": wrong_code(code)})
        assert (response.status_code, response.json()) == (
            400,
            {"error": "invalid_code", "message": NOT_RIGHT, "attempts_remaining": left},
        )
        assert "no-store" in response["Cache-Control"]
    challenge = Challenge.objects.get()
    assert (challenge.attempts, challenge.status, challenge.code_hash) == (5, ChallengeStatus.BURNED, "")
    # Now even the right code is refused.
    response = api.post(verify_url(body["id"]), {"code": code})
    assert (response.status_code, response.json()) == (
        400,
        {"error": "burned", "message": BURNED, "attempts_remaining": 0},
    )
    assert events("verify_failed", "challenge_burned", "verify_succeeded") == [
        *[("verify_failed", "invalid_code")] * 5,
        ("challenge_burned", ""),
        ("verify_failed", "burned"),
    ]
    assert StepUpGrant.objects.count() == 0


def test_expired(api: Api, clock: time_machine.Traveller, flow: Flow) -> None:
    body, code = flow.create(api)
    clock.shift(300)  # expires_at is exclusive
    response = api.post(verify_url(body["id"]), {"code": code})
    assert (response.status_code, response.json()) == (
        400,
        {"error": "expired", "message": EXPIRED, "attempts_remaining": 0},
    )
    assert Challenge.objects.get().status == ChallengeStatus.EXPIRED
    assert events("verify_failed") == [("verify_failed", "expired")]
    assert StepUpGrant.objects.count() == 0


def test_expired_one_second_earlier_still_works(api: Api, clock: time_machine.Traveller, flow: Flow) -> None:
    body, code = flow.create(api)
    clock.shift(299)
    assert api.post(verify_url(body["id"]), {"code": code}).status_code == 200


def test_used(api: Api, flow: Flow) -> None:
    body, code = flow.create(api)
    assert api.post(verify_url(body["id"]), {"code": code}).status_code == 200
    response = api.post(verify_url(body["id"]), {"code": code})
    assert (response.status_code, response.json()) == (
        400,
        {"error": "used", "message": USED, "attempts_remaining": 0},
    )
    assert StepUpGrant.objects.count() == 1
    assert events("verify_failed") == [("verify_failed", "used")]


@pytest.mark.parametrize(
    "code", ["12345a", "12345", "1234567", "١٢٣٤٥٦", "\uff11\uff12\uff13\uff14\uff15\uff16", "12 34 5", "12.3456", " "]
)
def test_malformed_codes_cost_no_attempt(api: Api, flow: Flow, code: str) -> None:
    """Non-ASCII digits ("١٢٣٤٥٦", full-width) pass str.isdigit() but are malformed to the engine."""
    body, _right = flow.create(api)
    response = api.post(verify_url(body["id"]), {"code": code})
    assert (response.status_code, response.json()) == (
        400,
        {"error": "malformed", "message": DIGITS_ONLY, "field_errors": {"code": [DIGITS_ONLY]}},
    )
    assert Challenge.objects.get().attempts == 0
    assert events("verify_failed") == [("verify_failed", "malformed")]


def test_unsupported_purpose(api: Api) -> None:
    for purpose in ("login", "sign_in", "verify_email", "nope"):
        response = api.post(CHALLENGES, {"purpose": purpose})
        assert (response.status_code, response.json()) == (
            400,
            {"error": "unsupported_purpose", "message": UNKNOWN_PURPOSE},
        )
    assert row_counts() == (0, 0, 0)


def test_a_login_code_does_not_confirm_step_up(api: Api, user: Any, flow: Flow) -> None:
    """A code issued for another flow (through services, bound to the same credential) answers like a wrong code."""
    from django_emailotp.services import issue_challenge

    with flow.capture(execute=True):
        login = issue_challenge(user=user, purpose="login")
    response = api.post(verify_url(login.pk), {"code": code_from(flow.outbox[-1])})
    assert (response.status_code, response.json()) == (
        400,
        {"error": "invalid_code", "message": NOT_RIGHT, "attempts_remaining": 4},
    )
    login.refresh_from_db()
    assert (login.status, login.attempts) == (ChallengeStatus.PENDING, 0)


def test_resend_within_the_cooldown_is_rate_limited(api: Api, clock: time_machine.Traveller, flow: Flow) -> None:
    body, code = flow.create(api)
    for elapsed, wait in ((0, 60), (45, 15), (59.5, 1)):
        clock.move_to(T0 + timedelta(seconds=elapsed))
        response, sent = flow.resend(api, body["id"])
        assert response.status_code == 429
        assert response["Retry-After"] == str(wait)
        assert response.json() == {
            "error": "rate_limited",
            "message": f"Please wait {wait} seconds before asking for another code.",
            "retry_after": wait,
        }
        assert sent is None
        # Creating again is the same request in other words.
        again = api.post(CHALLENGES, {"purpose": "step_up"})
        assert (again.status_code, again["Retry-After"], again.json()) == (429, str(wait), response.json())
    assert Challenge.objects.count() == 1
    assert events("resend_throttled") == [("resend_throttled", "")] * 6
    # The code that was sent still works.
    assert api.post(verify_url(body["id"]), {"code": code}).status_code == 200


def test_resend_of_an_unknown_or_foreign_challenge_is_404(api: Api, bob_api: Api, flow: Flow) -> None:
    bobs, _code = flow.create(bob_api)
    other_ids = [bobs["id"], "00000000-0000-0000-0000-000000000000", "not-a-uuid"]
    for challenge_id in other_ids:
        response, sent = flow.resend(api, challenge_id)
        assert (response.status_code, response.json()) == (
            404,
            {"error": "not_found", "message": "There is no such code request for you."},
        )
        assert sent is None
    assert Challenge.objects.get().status == ChallengeStatus.PENDING


# ---------------------------------------------------------------------------------------------------------------
# Unknown and foreign challenges look exactly like a wrong code


def test_unknown_and_foreign_ids_answer_like_a_wrong_code(api: Api, bob_api: Api, flow: Flow) -> None:
    bobs, bobs_code = flow.create(bob_api)
    mine, my_code = flow.create(api)
    wrong = api.post(verify_url(mine["id"]), {"code": wrong_code(my_code)})
    assert wrong.status_code == 400
    for challenge_id in (bobs["id"], "5f0c6b1e-8f7a-4a51-9a55-0a4f2b8f3c11", "not-a-uuid"):
        for code in (bobs_code, wrong_code(bobs_code)):
            response = api.post(verify_url(challenge_id), {"code": code})
            assert response.status_code == wrong.status_code
            assert response.content == wrong.content
            assert response.json() == {"error": "invalid_code", "message": NOT_RIGHT, "attempts_remaining": 4}
            assert response["Content-Type"] == wrong["Content-Type"]
    # Bob's challenge lost no attempt and still works for bob.
    bob = Challenge.objects.get(pk=bobs["id"])
    assert (bob.attempts, bob.status) == (0, ChallengeStatus.PENDING)
    assert StepUpGrant.objects.count() == 0
    assert bob_api.post(verify_url(bobs["id"]), {"code": bobs_code}).status_code == 200
    # The audit trail knows the truth.
    assert events("verify_failed") == [
        ("verify_failed", "invalid_code"),
        ("verify_failed", "wrong_binding"),
        ("verify_failed", "wrong_binding"),
        ("verify_failed", "not_found"),
        ("verify_failed", "not_found"),
        ("verify_failed", "not_found"),
        ("verify_failed", "not_found"),
    ]


def test_same_users_challenge_from_another_credential_answers_like_a_wrong_code(
    api: Api, user: Any, flow: Flow
) -> None:
    """alice's own challenge, issued to her other session or token, cannot be verified here."""
    elsewhere = token_api(user) if api.kind == "session" else session_api(user)
    theirs, code = flow.create(elsewhere)
    response = api.post(verify_url(theirs["id"]), {"code": code})
    assert (response.status_code, response.json()) == (
        400,
        {"error": "invalid_code", "message": NOT_RIGHT, "attempts_remaining": 4},
    )
    assert Challenge.objects.get().attempts == 0
    assert StepUpGrant.objects.count() == 0
    assert elsewhere.post(verify_url(theirs["id"]), {"code": code}).status_code == 200


# ---------------------------------------------------------------------------------------------------------------
# Grants are bound to the credential


def test_a_token_grant_does_not_count_for_another_token_of_the_same_user(user: Any, clock: Any, flow: Flow) -> None:
    first = Token.objects.create(user=user)
    token_a = token_api(user, first)
    flow.step_up(token_a)
    assert token_a.get(STEP_UP).json()["verified"] is True
    # DRF keeps one Token per user: a regenerated token is a new credential with no grant.
    first.delete()
    token_b = token_api(user)
    assert token_b.get(STEP_UP).json() == {"verified": False, "expires_at": None, "max_age": 300}
    assert StepUpGrant.objects.count() == 1


def test_a_bearer_grant_does_not_count_for_a_second_live_key_of_the_same_user(
    user: Any, clock: Any, flow: Flow
) -> None:
    """Two credentials alive at once (tests/api_urls.py's Bearer keys): each has its own grant."""
    api_urls.BEARER_KEYS.update({"key-a": user.username, "key-b": user.username})
    bearer_api = "/api/bearer-otp/challenges/"
    key_a = Api(Client(), "bearer", {"Authorization": "Bearer key-a"}, prefix=bearer_api)
    key_b = Api(Client(), "bearer", {"Authorization": "Bearer key-b"}, prefix=bearer_api)
    flow.step_up(key_a)
    assert key_a.get("/api/secret/").status_code == 200
    response = key_b.get("/api/secret/")
    assert (response.status_code, response.json()["error"]) == (401, "step_up_required")
    assert api_urls.view_runs == [("secret", "alice", "token")]
    assert key_b.get("/api/bearer-otp/step-up/").json()["verified"] is False
    assert key_a.get("/api/bearer-otp/step-up/").json()["verified"] is True


def test_a_token_grant_does_not_count_for_the_session(user: Any, clock: Any, flow: Flow) -> None:
    token = token_api(user)
    session = session_api(user)
    flow.step_up(token)
    assert token.get(STEP_UP).json()["verified"] is True
    assert session.get(STEP_UP).json()["verified"] is False


def test_a_session_grant_does_not_count_for_a_token(user: Any, clock: Any, flow: Flow) -> None:
    session = session_api(user)
    token = token_api(user)
    flow.step_up(session)
    assert session.get(STEP_UP).json()["verified"] is True
    assert token.get(STEP_UP).json()["verified"] is False


def test_another_users_grant_counts_for_nobody_else(api: Api, bob_api: Api, flow: Flow) -> None:
    flow.step_up(bob_api)
    assert api.get(STEP_UP).json()["verified"] is False


# ---------------------------------------------------------------------------------------------------------------
# Authentication and CSRF


@pytest.mark.parametrize(
    ("method", "path"),
    [("post", CHALLENGES), ("post", verify_url("x")), ("post", resend_url("x")), ("get", STEP_UP)],
)
def test_anonymous_clients_are_refused(db: None, method: str, path: str) -> None:
    """The session authenticator comes first in the example site, so DRF answers 403 rather than 401."""
    client = Client(enforce_csrf_checks=True)
    response = getattr(client, method)(path, {"code": "123456"} if method == "post" else None)
    assert (response.status_code, response.json()) == (
        403,
        {"error": "not_authenticated", "message": "Authentication credentials were not provided."},
    )
    assert row_counts() == (0, 0, 0)


def test_a_bad_token_is_refused(db: None) -> None:
    response = Client().post(CHALLENGES, {"purpose": "step_up"}, headers={"Authorization": "Token nope"})
    assert (response.status_code, response.json()) == (403, {"error": "not_authenticated", "message": "Invalid token."})
    assert row_counts() == (0, 0, 0)


@pytest.mark.parametrize(
    ("path", "data"),
    [(CHALLENGES, {"purpose": "step_up"}), ("verify", {"code": "123456"}), ("resend", None)],
)
@pytest.mark.parametrize("csrf", ["missing", "wrong"])
def test_session_auth_enforces_csrf(user: Any, clock: Any, flow: Flow, path: str, data: Any, csrf: str) -> None:
    session = session_api(user)
    body, code = flow.create(session)
    path = {"verify": verify_url(body["id"]), "resend": resend_url(body["id"])}.get(path, path)
    if path == verify_url(body["id"]):
        data = {"code": code}
    before = row_counts()
    headers = {"X-CSRFToken": "x" * 32} if csrf == "wrong" else {}
    with flow.capture(execute=True):
        response = session.client.post(path, data, content_type="application/json", headers=headers)
    assert response.status_code == 403
    assert response.json()["error"] == "permission_denied"
    assert response.json()["message"].startswith("CSRF Failed: CSRF token ")
    assert row_counts() == before
    assert Challenge.objects.get().status == ChallengeStatus.PENDING
    assert len(flow.outbox) == 1


def test_tokens_need_no_csrf(user: Any, clock: Any, flow: Flow) -> None:
    """A token client sends no cookies, so there is nothing to forge; DRF checks CSRF only for sessions."""
    token = token_api(user)
    assert "X-CSRFToken" not in token.headers
    flow.step_up(token)


# ---------------------------------------------------------------------------------------------------------------
# Bad input: a clear 4xx, and nothing written but the audit event


def wrong_type_errors(field_name: str) -> list[tuple[Any, dict[str, Any]]]:
    string = {field_name: ["Must be a string."]}
    return [
        (123456, string),
        (["123456"], string),
        ({"code": "123456"}, string),
        (True, string),
        (12.5, string),
        (None, {field_name: ["This field may not be null."]}),
    ]


@pytest.mark.parametrize(("value", "field_errors"), wrong_type_errors("code"))
def test_verify_refuses_wrong_types(api: Api, flow: Flow, value: Any, field_errors: dict[str, Any]) -> None:
    body, _code = flow.create(api)
    before = row_counts()
    response = api.post(verify_url(body["id"]), {"code": value})
    assert (response.status_code, response.json()) == (
        400,
        {"error": "malformed", "message": SEE_FIELDS, "field_errors": field_errors},
    )
    assert row_counts() == before
    assert Challenge.objects.get().attempts == 0


@pytest.mark.parametrize(("value", "field_errors"), wrong_type_errors("purpose"))
def test_create_refuses_wrong_types(api: Api, value: Any, field_errors: dict[str, Any]) -> None:
    response = api.post(CHALLENGES, {"purpose": value})
    assert (response.status_code, response.json()) == (
        400,
        {"error": "malformed", "message": SEE_FIELDS, "field_errors": field_errors},
    )
    assert row_counts() == (0, 0, 0)


@pytest.mark.parametrize(
    ("path", "raw", "field_errors"),
    [
        (CHALLENGES, "{}", {"purpose": ["This field is required."]}),
        (
            CHALLENGES,
            '{"purpose": "' + "a" * 65 + '"}',
            {"purpose": ["Ensure this field has no more than 64 characters."]},
        ),
        (CHALLENGES, "[]", {"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}),
        (CHALLENGES, '"step_up"', {"non_field_errors": ["Invalid data. Expected a dictionary, but got str."]}),
        (CHALLENGES, "null", {"non_field_errors": ["No data provided"]}),
        ("verify", "{}", {"code": ["This field is required."]}),
        ("verify", '{"code": ""}', {"code": ["This field may not be blank."]}),
        ("verify", '{"code": "' + "1" * 65 + '"}', {"code": ["Ensure this field has no more than 64 characters."]}),
        ("verify", "[1, 2]", {"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}),
    ],
)
def test_missing_or_oversized_fields(api: Api, flow: Flow, path: str, raw: str, field_errors: dict[str, Any]) -> None:
    body, _code = flow.create(api)
    path = verify_url(body["id"]) if path == "verify" else path
    before = row_counts()
    response = api.post(path, raw)
    assert (response.status_code, response.json()) == (
        400,
        {"error": "malformed", "message": SEE_FIELDS, "field_errors": field_errors},
    )
    assert row_counts() == before


@pytest.mark.parametrize("raw", ['{"code": "000000", "code": "%s"}', '{"code": "%s", "code": "%s"}'])
def test_repeated_keys_are_refused(api: Api, flow: Flow, raw: str) -> None:
    """Which of two values a parser keeps is parser-specific: the request is refused, even when both are right."""
    body, code = flow.create(api)
    before = row_counts()
    response = api.post(verify_url(body["id"]), raw.replace("%s", code))
    assert response.status_code == 400
    assert response.json() == {
        "error": "malformed",
        "message": 'JSON parse error - Duplicate key "code".',
    }
    assert row_counts() == before
    assert Challenge.objects.get().status == ChallengeStatus.PENDING


@pytest.mark.parametrize("raw", ["{", '{"code": }', "\x00", '{"code": NaN}', '{"purpose": "step_up"'])
def test_invalid_json(api: Api, flow: Flow, raw: str) -> None:
    body, _code = flow.create(api)
    before = row_counts()
    for path in (CHALLENGES, verify_url(body["id"])):
        response = api.post(path, raw)
        assert response.status_code == 400
        assert response.json()["error"] == "malformed"
        assert response.json()["message"].startswith("JSON parse error - ")
    assert row_counts() == before


def test_form_encoded_bodies_work_like_json(api: Api, flow: Flow) -> None:
    with flow.capture(execute=True):
        created = api.post(CHALLENGES, "purpose=step_up", content_type="application/x-www-form-urlencoded")
    assert created.status_code == 202
    code = code_from(flow.outbox[-1])
    challenge_id = created.json()["id"]
    form = "application/x-www-form-urlencoded"
    wrong = api.post(verify_url(challenge_id), f"code={wrong_code(code)}", content_type=form)
    assert (wrong.status_code, wrong.json()["attempts_remaining"]) == (400, 4)
    unicode_digits = api.post(verify_url(challenge_id), "code=%D9%A1%D9%A2%D9%A3%D9%A4%D9%A5%D9%A6", content_type=form)
    assert (unicode_digits.status_code, unicode_digits.json()["error"]) == (400, "malformed")
    missing = api.post(verify_url(challenge_id), "kode=1", content_type=form)
    assert (missing.status_code, missing.json()["field_errors"]) == (400, {"code": ["This field is required."]})
    right = api.post(verify_url(challenge_id), f"code={code}", content_type=form)
    assert (right.status_code, right.json()["verified"]) == (200, True)


def test_unsupported_media_type(api: Api) -> None:
    response = api.post(CHALLENGES, "purpose=step_up", content_type="text/plain")
    assert (response.status_code, response.json()) == (
        415,
        {"error": "unsupported_media_type", "message": 'Unsupported media type "text/plain" in request.'},
    )
    assert row_counts() == (0, 0, 0)


def test_not_acceptable(api: Api) -> None:
    response = api.get(STEP_UP, headers={"Accept": "application/xml"})
    assert response.status_code == 406
    assert response.json()["error"] == "not_acceptable"


@pytest.mark.parametrize(("method", "path"), [("get", CHALLENGES), ("put", CHALLENGES), ("post", STEP_UP)])
def test_wrong_method(api: Api, method: str, path: str) -> None:
    response = getattr(api.client, method)(path, headers=api.headers)
    assert (response.status_code, response.json()["error"]) == (405, "method_not_allowed")
    assert row_counts() == (0, 0, 0)


@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded"])
def test_huge_bodies_are_413(api: Api, flow: Flow, settings: Any, content_type: str) -> None:
    body, code = flow.create(api)
    before = row_counts()
    padding = "1" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)
    raw = (
        json.dumps({"code": code, "padding": padding})
        if content_type == "application/json"
        else f"code={code}&padding={padding}"
    )
    for path in (CHALLENGES, verify_url(body["id"])):
        response = api.post(path, raw, content_type=content_type)
        assert (response.status_code, response.json()) == (
            413,
            {"error": "too_large", "message": "The request body is too large."},
        )
    assert row_counts() == before
    assert Challenge.objects.get().status == ChallengeStatus.PENDING


def test_huge_code_is_refused_before_any_work(api: Api, flow: Flow) -> None:
    body, _code = flow.create(api)
    before = row_counts()
    response = api.post(verify_url(body["id"]), {"code": "1" * 100_000})
    assert response.status_code == 400
    assert response.json()["field_errors"] == {"code": ["Ensure this field has no more than 64 characters."]}
    assert row_counts() == before


def test_user_without_an_email_address(clock: Any, db: None) -> None:
    nobody = UserFactory(username="nomail", email="")
    response = token_api(nobody).post(CHALLENGES, {"purpose": "step_up"})
    assert (response.status_code, response.json()["error"]) == (400, "unsupported_purpose")
    assert Challenge.objects.count() == 0
