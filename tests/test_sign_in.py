"""Passwordless sign-in by code, end to end through the HTML pages and the API, with the adapter hooks.

Codes go out on a background thread (``in_background=True``), so these tests commit for real
(``transaction=True``) and join the thread with ``services.wait_for_background_sends()`` before reading the outbox.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage
from django.test import Client
from rest_framework.authtoken.models import Token

from django_emailotp import services
from django_emailotp.adapter import EmailOTPAdapter, get_adapter
from django_emailotp.models import AuditEvent, AuditEventType, Challenge, ChallengeStatus, DeliveryStatus, Lockout
from tests.conftest import code_from
from tests.factories import UserFactory
from tests.test_issue import wrong_code

pytestmark = pytest.mark.django_db(transaction=True)

SIGN_IN = "/otp/sign-in/"
SIGN_IN_VERIFY = "/otp/sign-in/verify/"
SIGN_IN_RESEND = "/otp/sign-in/resend/"
CHALLENGES = "/api/otp/challenges/"
NOT_RIGHT = "That code is not right. Check the latest email and try again."


class CreatingAdapter(EmailOTPAdapter):
    """A project that lets a new address sign up by signing in."""

    def can_create_account(self, email: str, request: Any) -> bool:
        return True


@pytest.fixture(autouse=True)
def sign_in_on(settings: Any) -> None:
    settings.EMAIL_OTP_SIGN_IN_ENABLED = True


def events(event: AuditEventType) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(event=event).order_by("id"))


def post_address(client: Client, email: str, **extra: Any) -> Any:
    response = client.post(SIGN_IN, {"email": email, **extra})
    services.wait_for_background_sends()
    return response


def api_sign_in(client: Client, email: str) -> Any:
    response = client.post(CHALLENGES, {"purpose": "sign_in", "email": email}, content_type="application/json")
    services.wait_for_background_sends()
    return response


def verify_url(client: Client, challenge_id: Any) -> str:
    return f"{CHALLENGES}{challenge_id}/verify/"


def test_html_sign_in_from_address_to_signed_in_session(user: Any, mailoutbox: list[EmailMessage]) -> None:
    client = Client()
    form = client.get(SIGN_IN, {"next": "/security/"})
    assert form.status_code == 200
    assert form["Cache-Control"] == "max-age=0, no-cache, no-store, must-revalidate, private"
    assert 'name="next" value="/security/"' in form.content.decode()

    # The address is found whatever its case; the code goes to the account's own address.
    sent = post_address(client, "ALICE@Example.com", next="/security/")
    assert (sent.status_code, sent["Location"]) == (302, SIGN_IN_VERIFY)
    [message] = mailoutbox
    assert message.to == ["alice@example.com"]
    assert "Use this code to sign in" in message.body
    challenge = Challenge.objects.get()
    assert (challenge.user_id, challenge.purpose, challenge.delivery_status) == (user.pk, "sign_in", "sent")

    page = client.get(SIGN_IN_VERIFY)
    assert page.status_code == 200
    html = page.content.decode()
    assert "If A***@Example.com belongs to an account, we sent a code to it." in html
    assert 'autocomplete="one-time-code"' in html
    assert f'action="{SIGN_IN_RESEND}"' in html
    assert "_auth_user_id" not in client.session

    wrong = client.post(SIGN_IN_VERIFY, {"code": wrong_code(code_from(message))})
    assert wrong.status_code == 400
    assert NOT_RIGHT in wrong.content.decode()
    assert "4 attempts left." in wrong.content.decode()
    assert "_auth_user_id" not in client.session

    key_before = client.session.session_key
    done = client.post(SIGN_IN_VERIFY, {"code": code_from(message)})
    assert (done.status_code, done["Location"]) == (302, "/security/")
    assert client.session["_auth_user_id"] == str(user.pk)
    assert client.session.session_key != key_before  # login() cycled the key
    challenge.refresh_from_db()
    assert challenge.status == ChallengeStatus.VERIFIED
    [requested] = events(AuditEventType.SIGN_IN_REQUESTED)
    assert (requested.user_id, requested.reason, requested.data) == (user.pk, "", {"email_sent": True})
    [completed] = events(AuditEventType.SIGN_IN_COMPLETED)
    assert (completed.user_id, completed.outcome, completed.challenge_id) == (user.pk, "success", challenge.pk)
    assert completed.data == {"account_created": False}
    # Finished: the code page sends the browser back to the address form.
    assert client.get(SIGN_IN_VERIFY)["Location"] == SIGN_IN


def test_an_unsafe_next_is_dropped(user: Any, mailoutbox: list[EmailMessage]) -> None:
    client = Client()
    post_address(client, "alice@example.com", next="https://evil.example/")
    done = client.post(SIGN_IN_VERIFY, {"code": code_from(mailoutbox[0])})
    assert (done.status_code, done["Location"]) == (302, "/")


def test_unknown_address_sends_nothing_and_no_code_signs_in(db: None, mailoutbox: list[EmailMessage]) -> None:
    client = Client()
    sent = post_address(client, "nobody@example.com")
    assert (sent.status_code, sent["Location"]) == (302, SIGN_IN_VERIFY)
    assert mailoutbox == []
    challenge = Challenge.objects.get()
    assert (challenge.user_id, challenge.email, challenge.send_email) == (None, "nobody@example.com", False)
    assert challenge.delivery_status == DeliveryStatus.SKIPPED
    assert challenge.code_hash == ""
    for guess in ("000000", "123456", "999999", "111111"):
        response = client.post(SIGN_IN_VERIFY, {"code": guess})
        assert response.status_code == 400
        assert NOT_RIGHT in response.content.decode()
    burned = client.post(SIGN_IN_VERIFY, {"code": "222222"})
    assert "Too many wrong attempts" in burned.content.decode()
    assert "_auth_user_id" not in client.session
    assert get_user_model().objects.count() == 0
    [requested] = events(AuditEventType.SIGN_IN_REQUESTED)
    assert (requested.user_id, requested.reason, requested.data) == (None, "unknown_address", {"email_sent": False})


def test_the_adapter_may_create_the_account(settings: Any, mailoutbox: list[EmailMessage]) -> None:
    settings.EMAIL_OTP_ADAPTER = "tests.test_sign_in.CreatingAdapter"
    client = Client()
    post_address(client, "newcomer@example.com")
    [message] = mailoutbox
    assert message.to == ["newcomer@example.com"]
    assert get_user_model().objects.count() == 0  # nothing is created before the code proves the address
    done = client.post(SIGN_IN_VERIFY, {"code": code_from(message)})
    assert done.status_code == 302
    created = get_user_model().objects.get()
    assert (created.username, created.email, created.has_usable_password()) == (
        "newcomer@example.com",
        "newcomer@example.com",
        False,
    )
    assert client.session["_auth_user_id"] == str(created.pk)
    [completed] = events(AuditEventType.SIGN_IN_COMPLETED)
    assert completed.data == {"account_created": True}


def test_a_locked_out_account_is_answered_like_an_unknown_address(user: Any, mailoutbox: list[EmailMessage]) -> None:
    from datetime import timedelta

    from django.utils import timezone

    Lockout.objects.create(
        user=user, scope="sign_in", locked_until=timezone.now() + timedelta(minutes=15), lock_count=1
    )
    client = Client()
    sent = post_address(client, "alice@example.com")
    assert (sent.status_code, sent["Location"]) == (302, SIGN_IN_VERIFY)
    assert mailoutbox == []
    challenge = Challenge.objects.get()
    assert (challenge.user_id, challenge.send_email) == (None, False)
    [refusal] = events(AuditEventType.RATE_LIMITED)
    assert (refusal.user_id, refusal.reason) == (user.pk, "locked_out")
    [requested] = events(AuditEventType.SIGN_IN_REQUESTED)
    assert (requested.user_id, requested.reason, requested.data) == (user.pk, "locked_out", {"email_sent": False})
    wrong = client.post(SIGN_IN_VERIFY, {"code": "123456"})
    assert wrong.status_code == 400
    assert "4 attempts left." in wrong.content.decode()


def test_the_code_page_without_a_request_goes_back_to_the_form(db: None) -> None:
    client = Client()
    assert client.get(SIGN_IN_VERIFY)["Location"] == SIGN_IN
    assert client.post(SIGN_IN_VERIFY, {"code": "123456"})["Location"] == SIGN_IN
    assert client.post(SIGN_IN_RESEND)["Location"] == SIGN_IN


def test_resend_supersedes_after_the_cooldown(user: Any, mailoutbox: list[EmailMessage], settings: Any) -> None:
    client = Client()
    post_address(client, "alice@example.com")
    early = client.post(SIGN_IN_RESEND)
    assert early["Location"] == SIGN_IN_VERIFY
    assert "Please wait 60 seconds" in client.get(SIGN_IN_VERIFY).content.decode()
    settings.EMAIL_OTP_RESEND_COOLDOWN = 0
    client.post(SIGN_IN_RESEND)
    services.wait_for_background_sends()
    first, second = mailoutbox
    stale = client.post(SIGN_IN_VERIFY, {"code": code_from(first)})
    assert stale.status_code == 400
    done = client.post(SIGN_IN_VERIFY, {"code": code_from(second)})
    assert done.status_code == 302
    assert client.session["_auth_user_id"] == str(user.pk)


def test_sign_in_is_off_by_default(user: Any, settings: Any) -> None:
    settings.EMAIL_OTP_SIGN_IN_ENABLED = False
    client = Client()
    assert client.get(SIGN_IN).status_code == 404
    assert client.post(SIGN_IN, {"email": "alice@example.com"}).status_code == 404
    api = client.post(CHALLENGES, {"purpose": "sign_in", "email": "alice@example.com"}, content_type="application/json")
    assert api.status_code == 403
    assert api.json()["error"] == "not_authenticated"
    assert Challenge.objects.count() == 0


def test_api_sign_in_with_the_session(user: Any, mailoutbox: list[EmailMessage]) -> None:
    client = Client()
    created = api_sign_in(client, "alice@example.com")
    assert created.status_code == 202
    body = created.json()
    challenge = Challenge.objects.get()
    assert (body["id"], body["purpose"], body["email_hint"]) == (str(challenge.pk), "sign_in", "a***@example.com")
    [message] = mailoutbox

    wrong = client.post(verify_url(client, challenge.pk), {"code": wrong_code(code_from(message))}, "application/json")
    assert (wrong.status_code, wrong.json()["error"], wrong.json()["attempts_remaining"]) == (400, "invalid_code", 4)

    done = client.post(verify_url(client, challenge.pk), {"code": code_from(message)}, content_type="application/json")
    assert done.status_code == 200
    assert done.json() == {"verified": True, "purpose": "sign_in", "step_up_expires_at": None}
    assert client.session["_auth_user_id"] == str(user.pk)
    # Signed in: the API now answers this session as alice.
    assert client.get("/api/otp/step-up/").status_code == 200


def test_api_sign_in_returns_a_token_when_configured(user: Any, mailoutbox: list[EmailMessage], settings: Any) -> None:
    settings.EMAIL_OTP_API_SIGN_IN_TOKEN = True
    client = Client()
    created = api_sign_in(client, "alice@example.com")
    code = code_from(mailoutbox[0])
    done = client.post(verify_url(client, created.json()["id"]), {"code": code}, content_type="application/json")
    assert done.status_code == 200
    token = Token.objects.get(user=user)
    assert done.json() == {"verified": True, "purpose": "sign_in", "step_up_expires_at": None, "token": token.key}
    status = Client().get("/api/otp/step-up/", HTTP_AUTHORIZATION=f"Token {token.key}")
    assert status.status_code == 200


def test_api_unknown_address_gets_a_real_id_that_verifies_as_a_wrong_code(
    db: None, mailoutbox: list[EmailMessage]
) -> None:
    client = Client()
    created = api_sign_in(client, "nobody@example.com")
    assert created.status_code == 202
    assert Challenge.objects.filter(pk=created.json()["id"], user=None, send_email=False).exists()
    assert mailoutbox == []
    wrong = client.post(verify_url(client, created.json()["id"]), {"code": "123456"}, content_type="application/json")
    assert wrong.status_code == 400
    assert wrong.json() == {"error": "invalid_code", "message": NOT_RIGHT, "attempts_remaining": 4}


def test_api_sign_in_refuses_a_missing_or_bad_address(db: None) -> None:
    client = Client()
    for body in ({"purpose": "sign_in"}, {"purpose": "sign_in", "email": "not an address"}):
        response = client.post(CHALLENGES, body, content_type="application/json")
        assert response.status_code == 400
        assert response.json()["error"] == "malformed"
        assert response.json()["field_errors"] == {"email": ["Enter a valid email address."]}
    # Anonymous clients may only sign in: a step-up code still needs a signed-in client.
    step_up = client.post(CHALLENGES, {"purpose": "step_up"}, content_type="application/json")
    assert (step_up.status_code, step_up.json()["error"]) == (403, "not_authenticated")
    assert Challenge.objects.count() == 0


def test_a_sign_in_code_does_not_step_up_and_a_step_up_code_does_not_sign_in(
    user: Any, mailoutbox: list[EmailMessage]
) -> None:
    client = Client()
    client.force_login(user)
    step_up = client.post(CHALLENGES, {"purpose": "step_up"}, content_type="application/json")
    services.wait_for_background_sends()
    step_up_code = code_from(mailoutbox[-1])
    result = services.complete_sign_in(_request_of(client), step_up.json()["id"], step_up_code)
    assert (result.success, result.reason) == (False, services.VerifyReason.WRONG_BINDING)
    assert Challenge.objects.get(pk=step_up.json()["id"]).attempts == 0

    anonymous = Client()
    created = anonymous.post(CHALLENGES, {"purpose": "sign_in", "email": "alice@example.com"}, "application/json")
    services.wait_for_background_sends()
    result = services.complete_step_up(created.json()["id"], code_from(mailoutbox[-1]), request=_request_of(anonymous))
    assert result.success is False
    assert Challenge.objects.get(pk=created.json()["id"]).status == ChallengeStatus.PENDING


def _request_of(client: Client) -> Any:
    """A request carrying the client's session (and its user), as the next request of that browser would."""
    from django.contrib.auth import get_user
    from django.test import RequestFactory

    request = RequestFactory().post("/")
    request.session = client.session
    request.user = get_user(request)
    return request


def test_the_adapter_finds_one_active_user_by_address(db: None) -> None:
    adapter = get_adapter()
    alice = UserFactory(username="alice", email="Alice@Example.com")
    assert adapter.get_user_by_email("alice@example.COM") == alice
    assert adapter.destination_for(alice) == "Alice@Example.com"
    UserFactory(username="inactive", email="gone@example.com", is_active=False)
    assert adapter.get_user_by_email("gone@example.com") is None
    UserFactory(username="twin1", email="twin@example.com")
    UserFactory(username="twin2", email="TWIN@example.com")
    assert adapter.get_user_by_email("twin@example.com") is None  # ambiguous: nobody
    assert adapter.can_create_account("new@example.com", None) is False


def test_the_adapter_setting_is_read_through(settings: Any) -> None:
    assert type(get_adapter()) is EmailOTPAdapter
    settings.EMAIL_OTP_ADAPTER = "tests.test_sign_in.CreatingAdapter"
    assert type(get_adapter()) is CreatingAdapter
    del settings.EMAIL_OTP_ADAPTER
    assert type(get_adapter()) is EmailOTPAdapter


def test_destination_for_decides_where_codes_go(user: Any, settings: Any, mailoutbox: list[EmailMessage]) -> None:
    settings.EMAIL_OTP_ADAPTER = "tests.test_sign_in.WorkAddressAdapter"
    client = Client()
    post_address(client, "alice@example.com")
    assert [message.to for message in mailoutbox] == [["alice@work.example.com"]]


class WorkAddressAdapter(EmailOTPAdapter):
    def destination_for(self, user: Any) -> str | None:
        return f"{user.get_username()}@work.example.com"
