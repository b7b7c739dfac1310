"""The second factor at login through the HTTP client on the example site: django_emailotp.views.LoginView, the code
page, resend, backup codes, "remember this browser", the on/off page and the remembered-browsers page."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth import SESSION_KEY
from django.core.mail import EmailMessage
from django.test import Client

from django_emailotp import services
from django_emailotp.models import (
    AuditEvent,
    BackupCode,
    Challenge,
    ChallengeStatus,
    Lockout,
    SecondFactor,
    TrustedDevice,
)
from tests.conftest import code_from
from tests.factories import UserFactory
from tests.test_issue import T0, Capture, wrong_code
from tests.test_step_up_views import csrf_token, forms_in

LOGIN = "/accounts/login/"
VERIFY = "/otp/login/verify/"
RESEND = "/otp/login/resend/"
BACKUP = "/otp/login/backup-code/"
SECOND_FACTOR = "/otp/second-factor/"
CHANGE = "/otp/second-factor/change/"
DEVICES = "/otp/devices/"
PASSWORD = "correct horse battery staple"
COOKIE = "emailotp_trusted_device"
NOT_RIGHT = "That code is not right. Check the latest email and try again."
Response = Any

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _optional_policy(settings: Any) -> None:
    settings.EMAIL_OTP_LOGIN_POLICY = "optional"
    settings.EMAIL_OTP_TRUSTED_DEVICE_DAYS = 0


def second_factor_on(user: Any) -> Any:
    SecondFactor.objects.create(user=user, enabled=True)
    return user


@pytest.fixture
def alice(user: Any) -> Any:
    """alice@example.com, with sign-in codes turned on."""
    return second_factor_on(user)


def password_step(client: Client, capture: Capture, username: str = "alice", **data: str) -> Response:
    with capture(execute=True):
        return client.post(LOGIN, {"username": username, "password": PASSWORD, **data})


def log_in(client: Client, capture: Capture, outbox: list[EmailMessage], **data: str) -> Response:
    """Password, then the code from the email: the response of the code page's POST."""
    sent = len(outbox)
    response = password_step(client, capture, **data)
    assert (response.status_code, response["Location"]) == (302, VERIFY)
    assert len(outbox) == sent + 1
    return client.post(VERIFY, {"code": code_from(outbox[-1]), "remember": data.get("remember", "")})


def events(user: Any | None = None) -> list[tuple[str, str, str]]:
    rows = AuditEvent.objects.order_by("id")
    if user is not None:
        rows = rows.filter(user=user)
    return list(rows.values_list("event", "purpose", "reason"))


def logged_in_as(client: Client) -> str | None:
    return client.session.get(SESSION_KEY)


def set_cookie_of(response: Response, name: str) -> dict[str, Any]:
    morsel = response.cookies[name]
    return {key: morsel[key] for key in ("max-age", "httponly", "secure", "samesite", "path")}


# ---------------------------------------------------------------------------------------------------------------
# Policy


@pytest.mark.parametrize(
    ("policy", "kind", "asks"),
    [
        ("off", "chose_on", False),
        ("off", "staff", False),
        ("optional", "plain", False),
        ("optional", "chose_off", False),
        ("optional", "chose_on", True),
        ("optional", "staff", False),
        ("required", "plain", True),
        ("required", "staff", True),
        ("required_staff", "plain", False),
        ("required_staff", "chose_on", False),
        ("required_staff", "staff", True),
        ("required_staff", "superuser", True),
    ],
)
def test_policy_matrix(
    settings: Any,
    client: Client,
    django_capture_on_commit_callbacks: Capture,
    mailoutbox: list[EmailMessage],
    policy: str,
    kind: str,
    asks: bool,
) -> None:
    settings.EMAIL_OTP_LOGIN_POLICY = policy
    user = UserFactory(
        username="alice", email="alice@example.com", is_staff=kind == "staff", is_superuser=kind == "superuser"
    )
    if kind in ("chose_on", "chose_off"):
        SecondFactor.objects.create(user=user, enabled=kind == "chose_on")
    assert services.second_factor_required(user) is asks

    response = password_step(client, django_capture_on_commit_callbacks)

    assert response.status_code == 302
    if asks:
        assert response["Location"] == VERIFY
        assert logged_in_as(client) is None
        assert [message.to for message in mailoutbox] == [["alice@example.com"]]
        assert Challenge.objects.get().purpose == "login"
        assert events(user) == [
            ("second_factor_required", "login", ""),
            ("challenge_issued", "login", ""),
            ("challenge_sent", "login", ""),
        ]
    else:
        # Exactly Django's LoginView: logged in, redirected to LOGIN_REDIRECT_URL, nothing sent or recorded.
        assert response["Location"] == "/"
        assert logged_in_as(client) == str(user.pk)
        assert mailoutbox == []
        assert AuditEvent.objects.count() == 0


def test_wrong_password_is_djangos_form_error(
    alice: Any, client: Client, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(LOGIN, {"username": "alice", "password": "wrong"})
    assert response.status_code == 200
    assert "Please enter a correct username and password." in response.content.decode()
    assert mailoutbox == []
    assert Challenge.objects.count() == 0
    assert services.LOGIN_SESSION_KEY not in client.session


# ---------------------------------------------------------------------------------------------------------------
# The flow


def test_login_runs_only_after_the_code(
    alice: Any, client: Client, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    with time_machine.travel(T0, tick=False):
        response = password_step(client, django_capture_on_commit_callbacks, next="/try-code/")
        assert (response.status_code, response["Location"]) == (302, VERIFY)
        session_key = client.session.session_key
        # Half-way, the session is anonymous to every view: no user id, and login_required pages send us away.
        assert SESSION_KEY not in client.session
        pending = client.session[services.LOGIN_SESSION_KEY]
        assert pending["user"] == str(alice.pk)
        assert pending["backend"] == "django.contrib.auth.backends.ModelBackend"
        assert pending["next"] == "/try-code/"
        challenge = Challenge.objects.get()
        assert pending["challenge"] == str(challenge.pk)
        assert pending["expires"] == challenge.expires_at.timestamp() == (T0 + timedelta(seconds=300)).timestamp()
        protected = client.get("/try-code/")
        assert (protected.status_code, protected["Location"]) == (302, "/accounts/login/?next=/try-code/")
        code = code_from(mailoutbox[0])
        assert code not in str(dict(client.session))  # the session holds no code

        page = client.get(VERIFY)
        assert page.status_code == 200
        assert "no-store" in page["Cache-Control"]
        body = page.content.decode()
        assert "<h1>Finish signing in</h1>" in body
        assert (
            "Your password was right. We sent a code to a***@example.com to finish signing in; "
            "it expires in 5 minutes." in body
        )
        assert "Sent to a***@example.com. It expires at 09:05 UTC." in body
        assert 'autocomplete="one-time-code"' in body
        assert "Remember this browser" not in body  # EMAIL_OTP_TRUSTED_DEVICE_DAYS = 0
        assert [(form.action, form.buttons) for form in forms_in(page)] == [
            ("", ["Confirm"]),
            (RESEND, ["Send a new code"]),
        ]
        code = code_from(mailoutbox[0])

        wrong = client.post(VERIFY, {"code": wrong_code(code)})
        assert wrong.status_code == 400
        assert NOT_RIGHT in wrong.content.decode()
        assert "4 attempts left." in wrong.content.decode()
        assert SESSION_KEY not in client.session

        right = client.post(VERIFY, {"code": code})
        assert (right.status_code, right["Location"]) == (302, "/try-code/")
        assert client.session[SESSION_KEY] == str(alice.pk)
        assert client.session.session_key != session_key  # login() cycled the key
        assert services.LOGIN_SESSION_KEY not in client.session
        assert client.get("/try-code/").status_code == 200
        challenge.refresh_from_db()
        assert (challenge.status, challenge.code_hash) == (ChallengeStatus.VERIFIED, "")
        assert events(alice) == [
            ("second_factor_required", "login", ""),
            ("challenge_issued", "login", ""),
            ("challenge_sent", "login", ""),
            ("verify_failed", "login", "invalid_code"),
            ("verify_succeeded", "login", ""),
            ("login_completed", "login", ""),
        ]
        assert AuditEvent.objects.get(event="login_completed").data == {"method": "email_code"}

        # The code is used up: entering it again (in a new pending login) does nothing.
        assert client.get(VERIFY)["Location"] == LOGIN


def test_pending_login_expires_with_the_challenge(
    alice: Any, client: Client, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    with time_machine.travel(T0, tick=False):
        password_step(client, django_capture_on_commit_callbacks)
        code = code_from(mailoutbox[0])
    with time_machine.travel(T0 + timedelta(seconds=299), tick=False):
        assert client.get(VERIFY).status_code == 200
    with time_machine.travel(T0 + timedelta(seconds=300), tick=False):
        page = client.get(VERIFY)
        assert (page.status_code, page["Location"]) == (302, LOGIN)
        assert services.LOGIN_SESSION_KEY not in client.session
    with time_machine.travel(T0 + timedelta(seconds=301), tick=False):
        late = client.post(VERIFY, {"code": code})
        assert (late.status_code, late["Location"]) == (302, LOGIN)
    assert SESSION_KEY not in client.session
    assert Challenge.objects.get().status == ChallengeStatus.PENDING  # never looked at again
    assert events(None)[-1] == ("verify_failed", "", "not_found")


def test_expired_pending_login_is_audited_as_expired(
    alice: Any, client: Client, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    with time_machine.travel(T0, tick=False):
        password_step(client, django_capture_on_commit_callbacks)
        code = code_from(mailoutbox[0])
    with time_machine.travel(T0 + timedelta(seconds=301), tick=False):
        late = client.post(VERIFY, {"code": code})
    assert (late.status_code, late["Location"]) == (302, LOGIN)
    assert SESSION_KEY not in client.session
    failed = AuditEvent.objects.get(event="verify_failed")
    assert (failed.reason, failed.challenge_id) == ("expired", Challenge.objects.get().pk)


def test_bound_to_the_browser_session(
    alice: Any, client: Client, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    password_step(client, django_capture_on_commit_callbacks)
    code = code_from(mailoutbox[0])

    # Someone with the code but not this browser session: nothing to complete, nobody logged in.
    stranger = Client()
    attempt = stranger.post(VERIFY, {"code": code})
    assert (attempt.status_code, attempt["Location"]) == (302, LOGIN)
    assert SESSION_KEY not in stranger.session
    assert stranger.get(VERIFY)["Location"] == LOGIN
    # Even with the same password step of their own, the code sent to this session is not theirs.
    password_step(stranger, django_capture_on_commit_callbacks)
    assert stranger.post(VERIFY, {"code": code}).status_code == 400
    assert SESSION_KEY not in stranger.session

    assert client.post(VERIFY, {"code": code})["Location"] == "/"
    assert client.session[SESSION_KEY] == str(alice.pk)


def test_password_change_while_pending_ends_it(
    alice: Any, client: Client, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    password_step(client, django_capture_on_commit_callbacks)
    alice.set_password("a new password")
    alice.save()
    response = client.post(VERIFY, {"code": code_from(mailoutbox[0])})
    assert (response.status_code, response["Location"]) == (302, LOGIN)
    assert SESSION_KEY not in client.session


def test_wrong_codes_burn_and_resend_honours_the_cooldown(
    alice: Any, client: Client, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    with time_machine.travel(T0, tick=False):
        password_step(client, django_capture_on_commit_callbacks)
        code = code_from(mailoutbox[0])
        with django_capture_on_commit_callbacks(execute=True):
            early = client.post(RESEND)
        assert (early.status_code, early["Location"]) == (302, VERIFY)
        assert "Please wait 60 seconds before asking for another code." in client.get(VERIFY).content.decode()
        assert len(mailoutbox) == 1
        assert events(alice)[-1] == ("resend_throttled", "login", "")

        for left in ("4 attempts", "3 attempts", "2 attempts", "1 attempt"):
            assert f"{left} left." in client.post(VERIFY, {"code": wrong_code(code)}).content.decode()
        burning = client.post(VERIFY, {"code": wrong_code(code)})
        assert burning.status_code == 400
        assert "Too many wrong attempts: that code no longer works. Ask for a new one." in burning.content.decode()
        assert Challenge.objects.get().status == ChallengeStatus.BURNED
        assert client.post(VERIFY, {"code": code}).status_code == 400
        assert SESSION_KEY not in client.session

    with time_machine.travel(T0 + timedelta(seconds=30), tick=False):
        # A burned code is no longer live, so a new one may be sent at once; its expiry becomes the login's.
        with django_capture_on_commit_callbacks(execute=True):
            assert client.post(RESEND)["Location"] == VERIFY
        assert len(mailoutbox) == 2
        fresh = Challenge.objects.get(status=ChallengeStatus.PENDING)
        assert client.session[services.LOGIN_SESSION_KEY]["challenge"] == str(fresh.pk)
        assert client.session[services.LOGIN_SESSION_KEY]["expires"] == fresh.expires_at.timestamp()
        assert "We sent a code to a***@example.com. It expires in 5 minutes." in client.get(VERIFY).content.decode()
        assert client.post(VERIFY, {"code": code_from(mailoutbox[1])})["Location"] == "/"
        assert client.session[SESSION_KEY] == str(alice.pk)


def test_entering_the_password_again_reuses_the_code_sent(
    alice: Any, client: Client, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    password_step(client, django_capture_on_commit_callbacks)
    again = password_step(client, django_capture_on_commit_callbacks)
    assert again["Location"] == VERIFY
    assert len(mailoutbox) == 1
    assert Challenge.objects.count() == 1
    assert client.post(VERIFY, {"code": code_from(mailoutbox[0])})["Location"] == "/"


def test_lockout_answers_429_and_backup_codes_still_work(
    settings: Any,
    alice: Any,
    client: Client,
    django_capture_on_commit_callbacks: Capture,
    mailoutbox: list[EmailMessage],
) -> None:
    settings.EMAIL_OTP_LOCKOUT_THRESHOLD = 3
    with django_capture_on_commit_callbacks(execute=True):
        [backup_code, *_] = services.regenerate_backup_codes(alice)
    mailoutbox.clear()
    with time_machine.travel(T0, tick=False):
        password_step(client, django_capture_on_commit_callbacks)
        code = code_from(mailoutbox[0])
        with django_capture_on_commit_callbacks(execute=True):
            for _ in range(3):
                assert client.post(VERIFY, {"code": wrong_code(code)}).status_code == 400
        assert Lockout.objects.get(user=alice).locked_until == T0 + timedelta(seconds=900)
        assert [message.subject for message in mailoutbox[1:]] == ["Example: sign-in codes paused after wrong attempts"]

        locked = client.post(VERIFY, {"code": code})
        assert locked.status_code == 429
        assert locked["Retry-After"] == "900"
        assert SESSION_KEY not in client.session

        # The password again while locked: no email, a 429 that says so, and the backup code form.
        again = password_step(client, django_capture_on_commit_callbacks)
        assert again.status_code == 429
        assert again["Retry-After"] == "900"
        body = again.content.decode()
        assert (
            "Too many wrong codes: codes by email are paused for this account until 09:15 UTC. "
            "You can finish signing in with a backup code." in body
        )
        assert BACKUP in [form.action for form in forms_in(again)]
        assert len(mailoutbox) == 2

        done = client.post(BACKUP, {"backup_code": backup_code})
        assert (done.status_code, done["Location"]) == (302, "/")
        assert client.session[SESSION_KEY] == str(alice.pk)
    assert AuditEvent.objects.filter(event="login_completed").get().data == {"method": "backup_code"}


def test_backup_code_as_second_factor(
    alice: Any, client: Client, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        codes = services.regenerate_backup_codes(alice)
    password_step(client, django_capture_on_commit_callbacks, next="/try-code/")
    page = client.get(VERIFY)
    assert "Use a backup code instead" in page.content.decode()

    wrong = client.post(BACKUP, {"backup_code": "AAAAA-AAAAA"})
    assert wrong.status_code == 400
    assert "That backup code is not right, or it was used already." in wrong.content.decode()
    assert SESSION_KEY not in client.session

    with django_capture_on_commit_callbacks(execute=True):
        right = client.post(BACKUP, {"backup_code": codes[3].lower()})
    assert (right.status_code, right["Location"]) == (302, "/try-code/")
    assert client.session[SESSION_KEY] == str(alice.pk)
    assert BackupCode.objects.filter(user=alice, used_at__isnull=False).count() == 1
    assert mailoutbox[-1].subject == "Example: a backup code was used"
    assert events(alice)[-3:] == [
        ("backup_code_used", "login", ""),
        ("login_completed", "login", ""),
        ("notice_sent", "", "backup_code_used"),
    ]
    # The emailed login code stays unused and cannot be spent later.
    assert Challenge.objects.get().status == ChallengeStatus.PENDING
    assert client.post(BACKUP, {"backup_code": codes[4]})["Location"] == LOGIN


# ---------------------------------------------------------------------------------------------------------------
# Remember this browser


@pytest.fixture
def remembering(settings: Any) -> None:
    settings.EMAIL_OTP_TRUSTED_DEVICE_DAYS = 30


@pytest.mark.usefixtures("remembering")
def test_remember_this_browser(
    alice: Any, client: Client, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    with time_machine.travel(T0, tick=False):
        password_step(client, django_capture_on_commit_callbacks)
        page = client.get(VERIFY).content.decode()
        assert '<input type="checkbox" name="remember" id="id_remember" value="on">' in page
        assert "Remember this browser for 30 days" in page

        response = client.post(VERIFY, {"code": code_from(mailoutbox[0]), "remember": "on"}, HTTP_USER_AGENT=FIREFOX)
        assert response["Location"] == "/"
        assert set_cookie_of(response, COOKIE) == {
            "max-age": 30 * 86400,
            "httponly": True,
            "secure": "",
            "samesite": "Lax",
            "path": "/",
        }
        token = response.cookies[COOKIE].value
        device = TrustedDevice.objects.get()
        assert (device.user_id, device.label, device.expires_at) == (
            alice.pk,
            "Firefox on Linux",
            T0 + timedelta(days=30),
        )
        # Only a keyed hash of the token is stored; the cookie is signed.
        assert token.split(":")[0] not in device.token_hash
        assert AuditEvent.objects.get(event="trusted_device_added").data == {
            "device": device.pk,
            "expires_at": device.expires_at.isoformat(),
        }

        # Next time, the password alone signs in on this browser: no email.
        client.post("/accounts/logout/")
        assert password_step(client, django_capture_on_commit_callbacks)["Location"] == "/"
        assert client.session[SESSION_KEY] == str(alice.pk)
        assert len(mailoutbox) == 1
        assert AuditEvent.objects.filter(event="login_completed").order_by("id").last().data == {
            "method": "trusted_device",
            "device": device.pk,
        }
        device.refresh_from_db()
        assert device.last_used_at is not None

        # Another browser is still asked.
        other = Client()
        assert password_step(other, django_capture_on_commit_callbacks)["Location"] == VERIFY

        # The list shows it, marked as this browser; forgetting it deletes the row and the cookie.
        listing = client.get(DEVICES)
        assert listing.status_code == 200
        assert "Firefox on Linux <strong>(this browser)</strong>" in listing.content.decode()
        forget = client.post(DEVICES, {"device": device.pk})
        assert (forget.status_code, forget["Location"]) == (302, DEVICES)
        assert forget.cookies[COOKIE].value == ""
        assert TrustedDevice.objects.count() == 0
        removed = AuditEvent.objects.get(event="trusted_device_removed")
        assert (removed.user_id, removed.reason) == (alice.pk, "forgotten")
        assert "No browser is remembered." in client.get(DEVICES).content.decode()


FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


@pytest.mark.usefixtures("remembering")
def test_remembered_cookie_is_secure_on_https(
    settings: Any,
    alice: Any,
    client: Client,
    django_capture_on_commit_callbacks: Capture,
    mailoutbox: list[EmailMessage],
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        client.post(LOGIN, {"username": "alice", "password": PASSWORD}, secure=True)
    response = client.post(VERIFY, {"code": code_from(mailoutbox[0]), "remember": "on"}, secure=True)
    assert set_cookie_of(response, COOKIE)["secure"] is True


@pytest.mark.usefixtures("remembering")
def test_forget_and_password_change_revoke_remembered_browsers(
    alice: Any, client: Client, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    log_in(client, django_capture_on_commit_callbacks, mailoutbox, remember="on")
    device = TrustedDevice.objects.get()
    client.post("/accounts/logout/")

    # A password change: the remembered browser is asked for a code again, and the row is gone.
    alice.set_password(PASSWORD)  # same password, new salt: a new session auth hash
    alice.save()
    assert services.trusted_devices(alice) == []
    assert password_step(client, django_capture_on_commit_callbacks)["Location"] == VERIFY
    assert not TrustedDevice.objects.filter(pk=device.pk).exists()
    removed = AuditEvent.objects.get(event="trusted_device_removed")
    assert (removed.reason, removed.data) == ("password_changed", {"devices": [str(device.pk)]})


@pytest.mark.usefixtures("remembering")
def test_a_forged_or_foreign_cookie_is_not_trusted(
    alice: Any,
    other_user: Any,
    client: Client,
    django_capture_on_commit_callbacks: Capture,
    mailoutbox: list[EmailMessage],
) -> None:
    second_factor_on(other_user)
    log_in(client, django_capture_on_commit_callbacks, mailoutbox, remember="on")
    client.post("/accounts/logout/")
    signed = client.cookies[COOKIE].value

    # bob's login in alice's remembered browser still asks bob for his code.
    assert password_step(client, django_capture_on_commit_callbacks, username="bob")["Location"] == VERIFY
    # A cookie whose signature does not match is ignored.
    client.cookies[COOKIE] = signed[:-2] + ("AA" if not signed.endswith("AA") else "BB")
    assert password_step(client, django_capture_on_commit_callbacks)["Location"] == VERIFY
    # Forgetting someone else's device does nothing.
    bob = Client()
    bob.force_login(other_user)
    assert bob.post(DEVICES, {"device": TrustedDevice.objects.get().pk})["Location"] == DEVICES
    assert TrustedDevice.objects.count() == 1


def test_remember_is_ignored_while_the_setting_is_off(
    alice: Any, client: Client, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    response = log_in(client, django_capture_on_commit_callbacks, mailoutbox, remember="on")
    assert response["Location"] == "/"
    assert COOKIE not in response.cookies
    assert TrustedDevice.objects.count() == 0


# ---------------------------------------------------------------------------------------------------------------
# Turning it on and off


def step_up(client: Client, capture: Capture, outbox: list[EmailMessage]) -> None:
    with capture(execute=True):
        assert client.post("/otp/send/", {"purpose": "step_up"}).status_code == 302
    assert client.post("/otp/verify/", {"purpose": "step_up", "code": code_from(outbox[-1])}).status_code == 302


def test_turning_the_second_factor_on_and_off_needs_step_up_and_emails(
    user: Any, client: Client, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    client.force_login(user)
    page = client.get(SECOND_FACTOR)
    assert page.status_code == 200
    assert "no-store" in page["Cache-Control"]
    assert "Sign-in codes are off for your account." in page.content.decode()
    [form] = [form for form in forms_in(page) if form.action == CHANGE]
    assert ("enabled", "on") in form.fields
    assert form.buttons == ["Turn sign-in codes on"]

    # Without a fresh step-up the POST is kept and the user is asked to confirm first.
    asked = client.post(CHANGE, {"enabled": "on"})
    assert asked.status_code == 302
    assert asked["Location"].startswith("/otp/verify/?purpose=step_up&next=%2Fotp%2Fsecond-factor%2Fchange%2F")
    assert SecondFactor.objects.count() == 0
    assert mailoutbox == []

    step_up(client, django_capture_on_commit_callbacks, mailoutbox)
    with django_capture_on_commit_callbacks(execute=True):
        on = client.post(CHANGE, {"enabled": "on"})
    assert (on.status_code, on["Location"]) == (302, SECOND_FACTOR)
    assert SecondFactor.objects.get(user=user).enabled is True
    notice = mailoutbox[-1]
    assert (notice.to, notice.subject) == (["alice@example.com"], "Example: sign-in codes turned on")
    assert "The second factor was just turned on" in str(notice.body)
    assert not any(char.isdigit() for char in str(notice.body).split("from")[0])  # no code, no secret
    body = client.get(SECOND_FACTOR).content.decode()
    assert "Sign-in codes are on: after your password, we will ask for a code sent by email." in body
    assert "Turn sign-in codes off" in body

    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(CHANGE, {"enabled": "on"}).status_code == 302  # already on: no second email
        assert client.post(CHANGE, {"enabled": "off"}).status_code == 302
    assert SecondFactor.objects.get(user=user).enabled is False
    assert [message.subject for message in mailoutbox[-2:]] == [
        "Example: sign-in codes turned on",
        "Example: sign-in codes turned off",
    ]
    changes = AuditEvent.objects.filter(event="second_factor_changed").order_by("id")
    assert [(row.reason, row.data) for row in changes] == [
        ("enabled", {"enabled": True, "devices_forgotten": 0}),
        ("disabled", {"enabled": False, "devices_forgotten": 0}),
    ]


@pytest.mark.parametrize("policy", ["off", "required", "required_staff"])
def test_users_choose_only_under_the_optional_policy(
    settings: Any,
    policy: str,
    user: Any,
    client: Client,
    django_capture_on_commit_callbacks: Capture,
    mailoutbox: list[EmailMessage],
) -> None:
    settings.EMAIL_OTP_LOGIN_POLICY = policy
    client.force_login(user)
    page = client.get(SECOND_FACTOR)
    assert CHANGE not in [form.action for form in forms_in(page)]
    step_up(client, django_capture_on_commit_callbacks, mailoutbox)
    assert client.post(CHANGE, {"enabled": "on"}).status_code == 403
    assert SecondFactor.objects.count() == 0


# ---------------------------------------------------------------------------------------------------------------
# next, CSRF, the admin


@pytest.mark.parametrize(
    ("next_url", "lands_on"),
    [
        ("/try-code/", "/try-code/"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("http://testserver/try-code/", "http://testserver/try-code/"),
        ("javascript:alert(1)", "/"),
    ],
)
def test_next_is_validated(
    alice: Any,
    client: Client,
    django_capture_on_commit_callbacks: Capture,
    mailoutbox: list[EmailMessage],
    next_url: str,
    lands_on: str,
) -> None:
    response = log_in(client, django_capture_on_commit_callbacks, mailoutbox, next=next_url)
    assert (response.status_code, response["Location"]) == (302, lands_on)


def test_next_is_checked_again_when_used(
    alice: Any, client: Client, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    password_step(client, django_capture_on_commit_callbacks)
    session = client.session
    session[services.LOGIN_SESSION_KEY] = {**session[services.LOGIN_SESSION_KEY], "next": "https://evil.example/"}
    session.save()
    assert client.post(VERIFY, {"code": code_from(mailoutbox[0])})["Location"] == "/"


def test_csrf_is_enforced(
    alice: Any, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    client = Client(enforce_csrf_checks=True)
    assert client.post(LOGIN, {"username": "alice", "password": PASSWORD}).status_code == 403
    token = csrf_token(client.get(LOGIN))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(LOGIN, {"username": "alice", "password": PASSWORD, "csrfmiddlewaretoken": token})
    assert response["Location"] == VERIFY
    code = code_from(mailoutbox[0])
    for url, data in ((VERIFY, {"code": code}), (RESEND, {}), (BACKUP, {"backup_code": "AAAAA-AAAAA"})):
        assert client.post(url, data).status_code == 403
    assert SESSION_KEY not in client.session
    page = client.get(VERIFY)
    done = client.post(VERIFY, {"code": code, "csrfmiddlewaretoken": csrf_token(page)})
    assert done["Location"] == "/"
    assert client.post(DEVICES, {"device": "1"}).status_code == 403
    assert client.post(CHANGE, {"enabled": "on"}).status_code == 403


def test_pages_need_post_and_a_login(client: Client, user: Any) -> None:
    assert client.get(RESEND).status_code == 405
    assert client.get(BACKUP).status_code == 405
    assert client.get(SECOND_FACTOR)["Location"] == "/accounts/login/?next=/otp/second-factor/"
    assert client.get(DEVICES)["Location"] == "/accounts/login/?next=/otp/devices/"
    client.force_login(user)
    assert client.get(CHANGE).status_code in (302, 405)
    assert client.put(DEVICES).status_code == 405


def test_admin_login_with_the_second_factor(
    settings: Any, client: Client, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    settings.EMAIL_OTP_LOGIN_POLICY = "required_staff"
    settings.EMAIL_OTP_PROTECTED_URLS = []
    admin = UserFactory(username="root", email="root@example.com", is_staff=True, is_superuser=True)
    page = client.get("/admin/login/?next=/admin/")
    assert page.status_code == 200
    assert "Django administration" in page.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/admin/login/?next=/admin/", {"username": "root", "password": PASSWORD, "next": "/admin/"}
        )
    assert (response.status_code, response["Location"]) == (302, VERIFY)
    assert client.get("/admin/").status_code == 302  # not in yet
    assert client.get(VERIFY).content.decode().count('href="/admin/login/"') == 1  # "cancel" starts over there
    done = client.post(VERIFY, {"code": code_from(mailoutbox[0])})
    assert (done.status_code, done["Location"]) == (302, "/admin/")
    assert client.session[SESSION_KEY] == str(admin.pk)
    assert client.get("/admin/").status_code == 200
    # Non-staff users cannot use the admin login, as with Django's.
    UserFactory(username="eve", email="eve@example.com")
    refused = Client().post("/admin/login/", {"username": "eve", "password": PASSWORD})
    assert refused.status_code == 200
    assert "Please enter the correct username and password for a staff account." in refused.content.decode()


def test_empty_code_and_unknown_device_are_refused_quietly(
    alice: Any, client: Client, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    password_step(client, django_capture_on_commit_callbacks)
    empty = client.post(VERIFY, {"code": ""})
    assert empty.status_code == 400
    assert "Enter the code from the email." in empty.content.decode()
    assert Challenge.objects.get().attempts == 0
    assert services.is_trusted_device(empty.wsgi_request, alice) is False
    client.post(VERIFY, {"code": code_from(mailoutbox[0])})
    assert client.post(DEVICES, {"device": "not-a-number"})["Location"] == DEVICES
    assert services.forget_device(alice, "not-a-number") is False


def test_send_rate_limit_at_the_password_step_answers_429(
    settings: Any, alice: Any, client: Client, django_capture_on_commit_callbacks: Capture
) -> None:
    # The second factor's codes are the owner's own: the per-IP limit (anonymous sends) does not count them, their
    # own budget does, and past it the code page says when they can ask again (SECURITY.md rules 18 and 19).
    settings.EMAIL_OTP_RATES = {"send_per_ip": "1/h", "send_per_user": "2/h"}
    password_step(client, django_capture_on_commit_callbacks)
    assert password_step(Client(), django_capture_on_commit_callbacks).status_code == 302
    third = password_step(Client(), django_capture_on_commit_callbacks)
    assert third.status_code == 429
    assert int(third["Retry-After"]) > 0
    assert "You have asked for several codes in a short time. You can ask for another one at " in third.content.decode()
