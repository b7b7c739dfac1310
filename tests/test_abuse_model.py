"""The abuse model (issue 10, findings 1, 2 and 3), driven through HTTP on PostgreSQL and Redis as the attack pass
did: a failure counts against what the guesser controls, nobody spends another's send budget, and a signed-in owner
over their own limit is told when to try again.

Sign-in codes go out on a background thread, so these tests commit for real (``transaction=True``) and join it
with ``services.wait_for_background_sends()`` before reading the outbox.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.core.mail import EmailMessage
from django.test import Client

from django_emailotp import services
from django_emailotp.crypto import email_pseudonym
from django_emailotp.models import AuditEvent, AuditEventType, Challenge, Lockout, SecondFactor
from tests.conftest import code_from
from tests.factories import UserFactory

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

CHALLENGES = "/api/otp/challenges/"
EMAIL = "/api/otp/email/"
SEND = "/otp/send/"
VERIFY = "/otp/verify/"
LOGIN = "/accounts/login/"
LOGIN_VERIFY = "/otp/login/verify/"
PASSWORD = "correct horse battery staple"
VICTIM = "victim@example.com"
WRONG = "000000"


@pytest.fixture(autouse=True)
def site(settings: Any) -> None:
    settings.EMAIL_OTP_SIGN_IN_ENABLED = True
    settings.EMAIL_OTP_LOGIN_POLICY = "optional"
    settings.EMAIL_OTP_TRUSTED_DEVICE_DAYS = 0


@pytest.fixture
def victim(db: None) -> Any:
    """An account with the email second factor on and no backup codes."""
    user = UserFactory(username="victim", email=VICTIM)
    SecondFactor.objects.create(user=user, enabled=True)
    return user


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def api_post(client: Client, path: str, body: dict[str, Any]) -> Any:
    response = client.post(path, body, content_type="application/json")
    services.wait_for_background_sends()
    return response


def mail_to(outbox: list[EmailMessage], address: str) -> list[EmailMessage]:
    return [message for message in outbox if message.to == [address]]


def assert_html_step_up_works(user: Any, outbox: list[EmailMessage]) -> None:
    client = signed_in(user)
    sent = client.post(SEND, {"purpose": "step_up"})
    assert (sent.status_code, sent["Location"]) == (302, f"{VERIFY}?purpose=step_up")
    message = outbox[-1]
    assert (message.to, "confirm it is you" in message.body) == ([user.email], True)
    done = client.post(VERIFY, {"purpose": "step_up", "code": code_from(message)})
    assert (done.status_code, done["Location"]) == (302, "/")


def assert_api_step_up_works(user: Any, outbox: list[EmailMessage]) -> None:
    client = signed_in(user)
    issued = api_post(client, CHALLENGES, {"purpose": "step_up"})
    assert issued.status_code == 202, issued.content
    message = outbox[-1]
    assert message.to == [user.email]
    verified = api_post(client, f"{CHALLENGES}{issued.json()['id']}/verify/", {"code": code_from(message)})
    assert verified.status_code == 200, verified.content
    assert verified.json()["verified"] is True


def assert_second_factor_login_works(user: Any, outbox: list[EmailMessage]) -> None:
    client = Client()
    password = client.post(LOGIN, {"username": user.username, "password": PASSWORD})
    assert (password.status_code, password["Location"]) == (302, LOGIN_VERIFY)
    message = outbox[-1]
    assert message.to == [user.email]
    done = client.post(LOGIN_VERIFY, {"code": code_from(message)})
    assert (done.status_code, done["Location"]) == (302, "/")
    assert client.session["_auth_user_id"] == str(user.pk)


def test_a_strangers_wrong_sign_in_codes_never_lock_the_owners_step_up_or_second_factor(
    victim: Any, mailoutbox: list[EmailMessage], caplog: pytest.LogCaptureFixture
) -> None:
    # Finding 1, as reproduced: two fresh anonymous sessions, sign-in codes for the victim, 5 wrong codes each.
    for _session in range(2):
        stranger = Client()
        issued = api_post(stranger, CHALLENGES, {"purpose": "sign_in", "email": VICTIM})
        assert issued.status_code == 202, issued.content
        verify = f"{CHALLENGES}{issued.json()['id']}/verify/"
        answers = [api_post(stranger, verify, {"code": WRONG}) for _ in range(5)]
        assert [answer.status_code for answer in answers] == [400] * 5
        # The lock must not show: the anonymous path answers like any wrong code, whatever the account's state.
        assert {answer.json()["error"] for answer in answers} <= {"invalid_code", "burned"}

    assert_html_step_up_works(victim, mailoutbox)
    assert_api_step_up_works(victim, mailoutbox)
    assert_second_factor_login_works(victim, mailoutbox)
    assert not AuditEvent.objects.filter(event=AuditEventType.RATE_LIMITED, reason="locked_out").exists()

    # The anonymous sign-in path of that address is locked, and nothing else.
    [lockout] = Lockout.objects.filter(user=victim)
    assert (lockout.scope, lockout.is_active(), lockout.lock_count) == ("sign_in", True, 1)
    [locked_event] = AuditEvent.objects.filter(event=AuditEventType.LOCKED_OUT)
    assert (locked_event.user_id, locked_event.purpose) == (victim.pk, "sign_in")

    # The stranger's next sign-in request for the address is answered as before, but no code goes out; the
    # suppressed send is logged without the address.
    before = len(mailoutbox)
    with caplog.at_level(logging.WARNING, logger="django_emailotp"):
        again = api_post(Client(), CHALLENGES, {"purpose": "sign_in", "email": VICTIM})
    assert again.status_code == 202
    assert len(mailoutbox) == before
    assert Challenge.objects.get(pk=again.json()["id"]).send_email is False
    [warning] = [record.getMessage() for record in caplog.records if record.name == "django_emailotp"]
    assert warning.startswith(
        f"emailotp: no sign_in code sent to {email_pseudonym(VICTIM)}: that path is locked until "
    )
    assert warning.endswith(" (answered as sent)")


def test_anonymous_sign_in_requests_never_spend_the_owners_step_up_budget(
    victim: Any, mailoutbox: list[EmailMessage]
) -> None:
    # Finding 2, first half: five anonymous sign-in requests from fresh sessions.
    for _ in range(5):
        assert api_post(Client(), CHALLENGES, {"purpose": "sign_in", "email": VICTIM}).status_code == 202
    strangers_codes = len(mail_to(mailoutbox, VICTIM))
    assert strangers_codes == 5

    # The victim's own step-up code is really emailed, through the page and through the API.
    assert_html_step_up_works(victim, mailoutbox)
    assert_api_step_up_works(victim, mailoutbox)
    assert len(mail_to(mailoutbox, VICTIM)) == strangers_codes + 2
    assert not AuditEvent.objects.filter(event=AuditEventType.RATE_LIMITED, user=victim).exists()


def test_another_users_codes_to_the_victims_address_hit_a_per_target_limit_not_the_victims_budget(
    victim: Any, mailoutbox: list[EmailMessage]
) -> None:
    # Finding 2, second half: any signed-in user posts /api/otp/email/ for the victim's address, from new sessions.
    attacker = UserFactory(username="mallory", email="mallory@example.com")
    answers = [api_post(signed_in(attacker), EMAIL, {"email": VICTIM}) for _ in range(6)]
    assert [answer.status_code for answer in answers] == [202] * 5 + [429]
    refused = answers[-1]
    retry_after = int(refused["Retry-After"])
    assert 1 <= retry_after <= 86400
    assert refused.json() == {
        "error": "send_limit_reached",
        "message": refused.json()["message"],
        "retry_after": retry_after,
    }
    assert "try again" in refused.json()["message"]
    assert len(mail_to(mailoutbox, VICTIM)) == 5
    [event] = AuditEvent.objects.filter(event=AuditEventType.RATE_LIMITED)
    assert (event.reason, event.user_id, event.purpose) == ("send_per_new_address_daily", attacker.pk, "verify_email")
    assert event.email_pseudonym == email_pseudonym(VICTIM)

    # The victim's own codes still go out: step-up and the second factor after the password.
    assert_api_step_up_works(victim, mailoutbox)
    assert_second_factor_login_works(victim, mailoutbox)
    assert len(mail_to(mailoutbox, VICTIM)) == 7


def test_an_owner_over_their_own_limit_gets_429_with_retry_after_in_the_api(
    victim: Any, mailoutbox: list[EmailMessage], settings: Any
) -> None:
    # Finding 3: five codes, then the sixth is refused out loud, never a silent 202.
    settings.EMAIL_OTP_RESEND_COOLDOWN = 0
    client = signed_in(victim)
    answers = [api_post(client, CHALLENGES, {"purpose": "step_up"}) for _ in range(6)]
    assert [answer.status_code for answer in answers] == [202] * 5 + [429]
    assert len(mailoutbox) == 5
    refused = answers[-1]
    retry_after = int(refused["Retry-After"])
    assert 1 <= retry_after <= 3600
    minutes = -(-retry_after // 60)
    body = refused.json()
    assert body == {
        "error": "send_limit_reached",
        "message": body["message"],
        "retry_after": retry_after,
    }
    assert f"in {minutes} minutes" in body["message"]
    assert Challenge.objects.count() == 5
    [event] = AuditEvent.objects.filter(event=AuditEventType.RATE_LIMITED)
    assert (event.reason, event.user_id, event.purpose, event.data["answered_as"]) == (
        "send_per_user",
        victim.pk,
        "step_up",
        "refused",
    )


def test_an_owner_over_their_own_limit_gets_a_page_that_says_when(
    victim: Any, mailoutbox: list[EmailMessage], settings: Any
) -> None:
    settings.EMAIL_OTP_RESEND_COOLDOWN = 0
    client = signed_in(victim)
    for _ in range(5):
        assert client.post(SEND, {"purpose": "step_up"}).status_code == 302
    refused = client.post(SEND, {"purpose": "step_up"})
    assert refused.status_code == 429
    retry_after = int(refused["Retry-After"])
    page = refused.content.decode()
    minutes = -(-retry_after // 60)
    assert "You have asked for several codes in a short time." in page
    assert f"in {minutes} minutes" in page
    assert " UTC" in page
    assert len(mailoutbox) == 5

    # The second factor's resend says the same on the code page, which still offers backup codes.
    login = Client()
    assert login.post(LOGIN, {"username": "victim", "password": PASSWORD})["Location"] == LOGIN_VERIFY
    for _ in range(4):
        assert login.post("/otp/login/resend/")["Location"] == LOGIN_VERIFY
    over = login.post("/otp/login/resend/")
    assert over.status_code == 429
    assert int(over["Retry-After"]) >= 1
    assert "You have asked for several codes in a short time." in over.content.decode()
    assert len(mail_to(mailoutbox, VICTIM)) == 10


def test_a_suppressed_anonymous_send_logs_a_warning_without_the_address(
    victim: Any, mailoutbox: list[EmailMessage], caplog: pytest.LogCaptureFixture, settings: Any
) -> None:
    # Anonymous, address-based: the answer stays "sent" (it must not tell whether the account exists).
    settings.EMAIL_OTP_RATES = {"send_per_ip_and_address": "2/h"}
    answers = []
    with caplog.at_level(logging.WARNING, logger="django_emailotp"):
        for _ in range(3):
            answers.append(api_post(Client(), CHALLENGES, {"purpose": "sign_in", "email": VICTIM}))
    assert [answer.status_code for answer in answers] == [202] * 3
    assert len(mailoutbox) == 2
    warnings = [record for record in caplog.records if record.name == "django_emailotp"]
    assert [record.getMessage() for record in warnings] == [
        f"emailotp: no sign_in code sent to {email_pseudonym(VICTIM)}: "
        "the send_per_ip_and_address limit is reached (answered as sent)"
    ]
    assert VICTIM not in caplog.text
    assert "victim@" not in caplog.text
    [event] = AuditEvent.objects.filter(event=AuditEventType.RATE_LIMITED)
    assert (event.reason, event.purpose, event.data["answered_as"]) == (
        "send_per_ip_and_address",
        "sign_in",
        "accepted",
    )
