"""A session planted before the password step learns nothing (issue 10 finding 10, SECURITY.md rule 9): a right
password moves the pending login into a session key made then, with a new binding nonce, so the planted session id
sees no masked address and can neither ask for a new code nor type one. The HTML login and the API's."""

from __future__ import annotations

from importlib import import_module
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.core.mail import EmailMessage
from django.test import Client

from django_emailotp.crypto import binding_hash
from django_emailotp.models import Challenge, ChallengeStatus, SecondFactor
from django_emailotp.requestinfo import SESSION_BINDING_KEY
from tests.conftest import code_from
from tests.test_issue import Capture

PASSWORD = "correct horse battery staple"
PLANTED_NONCE = "nonce-the-attacker-knows"
LOGIN, VERIFY, RESEND = "/accounts/login/", "/otp/login/verify/", "/otp/login/resend/"
API_LOGIN, API_VERIFY = "/api/otp/login/", "/api/otp/login/verify/"

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _second_factor(settings: Any, user: Any) -> None:
    settings.EMAIL_OTP_LOGIN_POLICY = "optional"
    settings.EMAIL_OTP_TRUSTED_DEVICE_DAYS = 0
    SecondFactor.objects.create(user=user, enabled=True)


def planted_session() -> str:
    """A session the attacker made (with a binding nonce they know) and got into the victim's browser."""
    store = import_module(settings.SESSION_ENGINE).SessionStore()
    store[SESSION_BINDING_KEY] = PLANTED_NONCE
    store.create()
    return str(store.session_key)


def browser_with(session_key: str) -> Client:
    client = Client()
    client.cookies[settings.SESSION_COOKIE_NAME] = session_key
    return client


def assert_moved_away_from(planted: str, victim: Client) -> None:
    assert victim.cookies[settings.SESSION_COOKIE_NAME].value != planted
    challenge = Challenge.objects.get()
    assert challenge.binding != binding_hash(f"session:{PLANTED_NONCE}")
    assert victim.session[SESSION_BINDING_KEY] != PLANTED_NONCE


def password_through_a_planted_session(capture: Capture, path: str, **extra: Any) -> tuple[str, Client, Any]:
    """The victim's browser, holding the planted session, enters the right password: (planted id, browser, answer)."""
    planted = planted_session()
    victim = browser_with(planted)
    with capture(execute=True):
        return planted, victim, victim.post(path, {"username": "alice", "password": PASSWORD}, **extra)


def test_the_html_login_leaves_a_planted_session_with_nothing(
    user: Any, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    planted, victim, password = password_through_a_planted_session(django_capture_on_commit_callbacks, LOGIN)
    assert (password.status_code, password["Location"]) == (302, VERIFY)
    code = code_from(mailoutbox[0])

    attacker = browser_with(planted)
    page = attacker.get(VERIFY)
    assert (page.status_code, page["Location"]) == (302, LOGIN)
    with django_capture_on_commit_callbacks(execute=True):
        resend = attacker.post(RESEND)
    assert (resend.status_code, resend["Location"]) == (302, LOGIN)
    assert len(mailoutbox) == 1
    typed = attacker.post(VERIFY, {"code": code})
    assert (typed.status_code, typed["Location"]) == (302, LOGIN)
    assert SESSION_KEY not in attacker.session
    assert Challenge.objects.get().status == ChallengeStatus.PENDING
    assert_moved_away_from(planted, victim)

    # The victim's own browser carries on: the masked address, then the code logs in.
    assert "a***@example.com" in victim.get(VERIFY).content.decode()
    assert victim.post(VERIFY, {"code": code})["Location"] == "/"
    assert victim.session[SESSION_KEY] == str(user.pk)
    assert SESSION_KEY not in browser_with(planted).session


def test_the_api_login_leaves_a_planted_session_with_nothing(
    user: Any, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    planted, victim, password = password_through_a_planted_session(
        django_capture_on_commit_callbacks, API_LOGIN, content_type="application/json"
    )
    assert password.status_code == 202
    assert password.json()["second_factor_required"] is True
    code = code_from(mailoutbox[0])

    attacker = browser_with(planted)
    typed = attacker.post(API_VERIFY, {"code": code}, content_type="application/json")
    assert (typed.status_code, typed.json()["error"]) == (400, "invalid_code")
    assert attacker.get(API_LOGIN).json() == {"logged_in": False}
    assert Challenge.objects.get().status == ChallengeStatus.PENDING
    assert_moved_away_from(planted, victim)

    done = victim.post(API_VERIFY, {"code": code}, content_type="application/json")
    assert (done.status_code, done.json()) == (200, {"logged_in": True})
    assert victim.session[SESSION_KEY] == str(user.pk)


def test_the_password_again_in_the_new_session_keeps_the_code_sent(
    django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    """The session made at the first password step is not a planted one: entering the password again there moves it
    to a new key as well, but keeps its nonce, so the code already sent still works (and none is sent again)."""
    victim = browser_with(planted_session())
    with django_capture_on_commit_callbacks(execute=True):
        victim.post(LOGIN, {"username": "alice", "password": PASSWORD})
        first_key = victim.cookies[settings.SESSION_COOKIE_NAME].value
        nonce = victim.session[SESSION_BINDING_KEY]
        again = victim.post(LOGIN, {"username": "alice", "password": PASSWORD})
    assert again["Location"] == VERIFY
    assert victim.cookies[settings.SESSION_COOKIE_NAME].value != first_key
    assert victim.session[SESSION_BINDING_KEY] == nonce
    assert (len(mailoutbox), Challenge.objects.count()) == (1, 1)
    assert browser_with(first_key).get(VERIFY)["Location"] == LOGIN
    assert victim.post(VERIFY, {"code": code_from(mailoutbox[0])})["Location"] == "/"
