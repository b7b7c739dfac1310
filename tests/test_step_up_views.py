"""The step-up pages through the HTTP client: prompt, send, verify, redirects, POST replay, CSRF, bad purposes.

The helpers at the top are shared by the other step-up test modules.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import time_machine
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.mail import EmailMessage
from django.test import Client

from django_emailotp.models import AuditEvent, Challenge, ChallengeStatus, StepUpGrant
from tests import stepup_urls
from tests.conftest import code_from
from tests.test_issue import T0, Capture, wrong_code

VERIFY = "/otp/verify/"
SEND = "/otp/send/"
CONTINUE = "/otp/continue/"
PROMPT = "/otp/verify/?purpose=step_up"
# What the test client returns: an Response with the client's extras (.json(), .wsgi_request, ...).
Response = Any
DANGER_ZONE = {"danger_zone": "confirm a change in the danger zone"}

NOT_RIGHT = "That code is not right. Check the latest email and try again."
BURNED = "Too many wrong attempts: that code no longer works. Ask for a new one."
REPLAY_GONE = "The form you submitted could not be kept. Please submit it again."
UNKNOWN_PURPOSE = "This confirmation is not available."


@dataclass
class Form:
    action: str
    method: str
    fields: list[tuple[str, str]] = field(default_factory=list)
    buttons: list[str] = field(default_factory=list)


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self._button = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append(Form(attributes.get("action", ""), attributes.get("method", "get")))
        elif tag == "input" and self.forms and "name" in attributes:
            self.forms[-1].fields.append((attributes["name"], attributes.get("value", "")))
        elif tag == "button" and self.forms:
            self._button = True

    def handle_data(self, data: str) -> None:
        if self._button:
            self.forms[-1].buttons.append(data.strip())
            self._button = False


def forms_in(response: Response) -> list[Form]:
    parser = _FormParser()
    parser.feed(response.content.decode())
    return parser.forms


def csrf_token(response: Response) -> str:
    """The CSRF token of the first form on the page."""
    [token] = [value for name, value in forms_in(response)[0].fields if name == "csrfmiddlewaretoken"]
    return token


def send_code(client: Client, capture: Capture, purpose: str = "step_up", **extra: Any) -> Response:
    """Press "Send code" (the email goes out after commit, in-process)."""
    with capture(execute=True):
        return client.post(SEND, {"purpose": purpose}, **extra)


def confirm(client: Client, capture: Capture, outbox: list[EmailMessage], purpose: str = "step_up") -> Response:
    """Send a code for ``purpose`` and enter it from the email; the verify page's response."""
    sent = len(outbox)
    assert send_code(client, capture, purpose).status_code == 302
    assert len(outbox) == sent + 1
    return client.post(VERIFY, {"purpose": purpose, "code": code_from(outbox[-1])})


def events(*names: str) -> list[tuple[str, str]]:
    """(event, reason) of the audit rows of the given types, oldest first."""
    rows = AuditEvent.objects.order_by("id")
    if names:
        rows = rows.filter(event__in=names)
    return list(rows.values_list("event", "reason"))


@pytest.fixture(autouse=True, name="stepup_site")
def stepup_site_fixture(settings: Any) -> Iterator[None]:
    """The test URLconf, the danger_zone purpose registered, no URL patterns, and a clean record of view runs."""
    settings.ROOT_URLCONF = "tests.stepup_urls"
    settings.LOGIN_URL = "login"
    settings.LOGIN_REDIRECT_URL = "home"
    settings.EMAIL_OTP_PURPOSES = DANGER_ZONE
    settings.EMAIL_OTP_PROTECTED_URLS = []
    stepup_urls.RUNS.clear()
    yield
    stepup_urls.RUNS.clear()


@pytest.fixture(name="alice")
def alice_fixture(user: Any, client: Client) -> Client:
    """A browser signed in as alice@example.com."""
    client.force_login(user)
    return client


# ---------------------------------------------------------------------------------------------------------------
# The whole flow


def test_full_flow_from_protected_view_to_grant(
    alice: Client, user: Any, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    with time_machine.travel(T0, tick=False):
        response = alice.get("/bare/")
        assert response.status_code == 302
        assert response["Location"] == "/otp/verify/?purpose=step_up&next=%2Fbare%2F"
        assert stepup_urls.RUNS == []
        required = AuditEvent.objects.get(event="step_up_required")
        assert (required.user_id, required.purpose, required.outcome) == (user.pk, "step_up", "info")
        assert required.data == {"path": "/bare/", "method": "GET", "max_age": 300}

        # The prompt says what and where, offers a button, and sends nothing on GET.
        prompt = alice.get(response["Location"])
        assert prompt.status_code == 200
        assert "no-store" in prompt["Cache-Control"]
        body = prompt.content.decode()
        assert "To continue, we need to confirm it is you with a code sent by email." in body
        assert "We will send a code to <strong>a***@example.com</strong>." in body
        assert "alice@example.com" not in body
        [send_form] = [form for form in forms_in(prompt) if form.action == SEND]
        assert (send_form.method, send_form.buttons) == ("post", ["Send code"])
        assert ("purpose", "step_up") in send_form.fields
        assert 'autocomplete="one-time-code"' not in body
        assert mailoutbox == []
        assert Challenge.objects.count() == 0

        sent = send_code(alice, django_capture_on_commit_callbacks)
        assert (sent.status_code, sent["Location"]) == (302, PROMPT)
        assert "no-store" in sent["Cache-Control"]
        assert [message.to for message in mailoutbox] == [["alice@example.com"]]
        challenge = Challenge.objects.get()
        assert (challenge.user_id, challenge.purpose, challenge.status) == (user.pk, "step_up", "pending")
        code = code_from(mailoutbox[0])

        # Now the code form: labelled, numeric, one-time-code, attempts and cooldown shown.
        prompt = alice.get(PROMPT)
        assert prompt.status_code == 200
        assert "no-store" in prompt["Cache-Control"]
        body = prompt.content.decode()
        assert (
            '<div class="emailotp-notice emailotp-notice-info" role="status">'
            "We sent a code to a***@example.com. It expires in 5 minutes.</div>" in body
        )
        assert '<label for="id_code">Code from the email</label>' in body
        assert 'id="id_code" autocomplete="one-time-code"' in body
        assert 'inputmode="numeric"' in body
        assert "Sent to a***@example.com. It expires at 09:05 UTC." in body
        assert "5 attempts left." in body
        assert "You can ask for a new code in 60 seconds." in body
        assert 'aria-invalid="true"' not in body
        assert [form.buttons for form in forms_in(prompt)] == [["Confirm"], ["Send a new code"]]
        # The notice is shown once.
        assert "We sent a code" not in alice.get(PROMPT).content.decode()

        for left in (4, 3):
            wrong = alice.post(VERIFY, {"purpose": "step_up", "code": wrong_code(code)})
            assert wrong.status_code == 400
            assert "no-store" in wrong["Cache-Control"]
            body = wrong.content.decode()
            assert f'<p id="emailotp-code-error" class="emailotp-error" role="alert">{NOT_RIGHT}</p>' in body
            assert 'aria-invalid="true"' in body
            assert 'aria-describedby="emailotp-code-help emailotp-code-error"' in body
            assert f"{left} attempts left." in body
        assert StepUpGrant.objects.count() == 0

        right = alice.post(VERIFY, {"purpose": "step_up", "code": code})
        assert (right.status_code, right["Location"]) == (302, "/bare/")
        grant = StepUpGrant.objects.get()
        assert (grant.user_id, grant.purpose, grant.challenge_id, grant.consumed_at) == (
            user.pk,
            "step_up",
            challenge.pk,
            None,
        )
        assert (grant.verified_at, grant.expires_at) == (T0, T0 + timedelta(seconds=300))
        challenge.refresh_from_db()
        assert (challenge.status, challenge.attempts, challenge.code_hash) == ("verified", 2, "")

        view = alice.get("/bare/")
        assert (view.status_code, view.content) == (200, b"bare ran")
        assert stepup_urls.RUNS == [("bare", "GET", [], [])]
    assert events() == [
        ("step_up_required", ""),
        ("challenge_issued", ""),
        ("challenge_sent", ""),
        ("verify_failed", "invalid_code"),
        ("verify_failed", "invalid_code"),
        ("verify_succeeded", ""),
        ("step_up_granted", ""),
    ]


def test_entering_a_code_before_sending_one(alice: Client) -> None:
    response = alice.post(VERIFY, {"purpose": "step_up", "code": "123456"})
    assert response.status_code == 400
    assert '<div class="emailotp-error" role="alert">Ask for a code first. </div>' in response.content.decode()
    assert events() == []


def test_malformed_code_costs_no_attempt(
    alice: Client, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    send_code(alice, django_capture_on_commit_callbacks)
    response = alice.post(VERIFY, {"purpose": "step_up", "code": "12345x"})
    assert response.status_code == 400
    assert "Enter the code as digits only, for example 123456." in response.content.decode()
    assert "5 attempts left." in response.content.decode()
    assert Challenge.objects.get().attempts == 0
    assert events("verify_failed") == [("verify_failed", "malformed")]


def test_burned_code_offers_a_new_one(
    alice: Client, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    send_code(alice, django_capture_on_commit_callbacks)
    code = code_from(mailoutbox[0])
    for left in (4, 3, 2, 1):
        assert (
            f"{left} attempt" in alice.post(VERIFY, {"purpose": "step_up", "code": wrong_code(code)}).content.decode()
        )
    last = alice.post(VERIFY, {"purpose": "step_up", "code": wrong_code(code)})
    assert last.status_code == 400
    body = last.content.decode()
    # The code is gone: the page says so and offers a new one instead of the code input.
    assert BURNED in body
    assert NOT_RIGHT not in body
    assert 'autocomplete="one-time-code"' not in body
    assert [(form.action, form.buttons) for form in forms_in(last)] == [(SEND, ["Send code"])]
    assert Challenge.objects.get().status == ChallengeStatus.BURNED

    # Even the right code no longer works.
    again = alice.post(VERIFY, {"purpose": "step_up", "code": code})
    assert again.status_code == 400
    assert BURNED in again.content.decode()
    assert StepUpGrant.objects.count() == 0
    assert events("verify_failed", "challenge_burned") == [
        *[("verify_failed", "invalid_code")] * 5,
        ("challenge_burned", ""),
        ("verify_failed", "burned"),
    ]

    # A new code can be sent at once (the burned one is not live, so no cooldown) and works.
    assert confirm(alice, django_capture_on_commit_callbacks, mailoutbox)["Location"] == "/home/"
    assert len(mailoutbox) == 2
    assert StepUpGrant.objects.count() == 1


def test_resend_honours_the_cooldown_and_replaces_the_code(
    alice: Client, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    with time_machine.travel(T0, tick=False) as traveller:
        send_code(alice, django_capture_on_commit_callbacks)
        traveller.shift(20)
        refused = send_code(alice, django_capture_on_commit_callbacks)
        assert (refused.status_code, refused["Location"]) == (302, PROMPT)
        assert len(mailoutbox) == 1
        body = alice.get(PROMPT).content.decode()
        assert (
            '<div class="emailotp-notice emailotp-notice-error" role="alert">'
            "Please wait 40 seconds before asking for another code.</div>" in body
        )
        assert "You can ask for a new code in 40 seconds." in body

        traveller.shift(40)
        send_code(alice, django_capture_on_commit_callbacks)
        assert len(mailoutbox) == 2
        old, new = code_from(mailoutbox[0]), code_from(mailoutbox[1])
        if old != new:
            assert alice.post(VERIFY, {"purpose": "step_up", "code": old}).status_code == 400
        assert alice.post(VERIFY, {"purpose": "step_up", "code": new}).status_code == 302
    assert sorted(Challenge.objects.values_list("status", flat=True)) == ["superseded", "verified"]
    assert events("resend_throttled") == [("resend_throttled", "")]


def test_prompt_needs_a_signed_in_user(client: Client, db: None) -> None:
    response = client.get(PROMPT)
    assert (response.status_code, response["Location"]) == (
        302,
        "/accounts/login/?next=/otp/verify/%3Fpurpose%3Dstep_up",
    )
    assert client.post(SEND, {"purpose": "step_up"})["Location"].startswith("/accounts/login/")
    assert Challenge.objects.count() == 0


# ---------------------------------------------------------------------------------------------------------------
# next: checked when stored and when used


EVIL_NEXT = [
    "https://evil.example/",
    "//evil.example",
    "javascript:alert(1)",
    "/\\evil",
    "http://testserver@evil.example/",
]


@pytest.mark.parametrize("evil", EVIL_NEXT)
def test_off_site_next_is_not_followed(
    alice: Client, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage], evil: str
) -> None:
    assert alice.get(VERIFY, {"purpose": "step_up", "next": evil}).status_code == 200
    assert alice.session["_emailotp_flow"]["step_up"]["next"] is None
    response = confirm(alice, django_capture_on_commit_callbacks, mailoutbox)
    assert (response.status_code, response["Location"]) == (302, "/home/")


def test_on_site_next_with_query_is_followed(
    alice: Client, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    first = alice.get("/bare/?tab=keys&page=2")
    assert first["Location"] == "/otp/verify/?purpose=step_up&next=%2Fbare%2F%3Ftab%3Dkeys%26page%3D2"
    alice.get(first["Location"])
    assert confirm(alice, django_capture_on_commit_callbacks, mailoutbox)["Location"] == "/bare/?tab=keys&page=2"


@pytest.mark.parametrize("evil", EVIL_NEXT)
def test_tampered_stored_next_is_checked_again_when_used(
    alice: Client, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage], evil: str
) -> None:
    alice.get(VERIFY, {"purpose": "step_up", "next": "/plain/"})
    send_code(alice, django_capture_on_commit_callbacks)
    session = alice.session
    assert session["_emailotp_flow"]["step_up"]["next"] == "/plain/"
    session["_emailotp_flow"]["step_up"]["next"] = evil
    session.save()
    response = alice.post(VERIFY, {"purpose": "step_up", "code": code_from(mailoutbox[0])})
    assert (response.status_code, response["Location"]) == (302, "/home/")


def test_https_site_refuses_an_http_next(
    alice: Client, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    alice.get(VERIFY, {"purpose": "step_up", "next": "http://testserver/plain/"}, secure=True)
    send_code(alice, django_capture_on_commit_callbacks, secure=True)
    response = alice.post(VERIFY, {"purpose": "step_up", "code": code_from(mailoutbox[0])}, secure=True)
    assert response["Location"] == "/home/"


# ---------------------------------------------------------------------------------------------------------------
# A POST that hit a protected view is kept and re-submitted once


@pytest.mark.usefixtures("middleware_installed")  # the decorator keeps the POST by itself too
def test_post_is_replayed_once_with_a_fresh_csrf_token(
    user: Any, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    original_token = csrf_token(browser.get("/transfer/form/"))
    kept = browser.post(
        "/transfer/", {"csrfmiddlewaretoken": original_token, "amount": "250", "to": ["acc-1", "acc-2"]}
    )
    assert kept.status_code == 302
    location = urlsplit(kept["Location"])
    query = parse_qs(location.query)
    assert (location.path, query["purpose"], query["next"]) == (VERIFY, ["step_up"], ["/transfer/"])
    [token] = query["replay"]
    assert stepup_urls.RUNS == []
    assert AuditEvent.objects.get(event="step_up_required").data == {
        "path": "/transfer/",
        "method": "POST",
        "max_age": 300,
    }

    prompt = browser.get(kept["Location"])
    with django_capture_on_commit_callbacks(execute=True):
        browser.post(SEND, {"purpose": "step_up", "csrfmiddlewaretoken": csrf_token(prompt)})
    code_page = browser.get(PROMPT)
    verified = browser.post(
        VERIFY, {"purpose": "step_up", "code": code_from(mailoutbox[0]), "csrfmiddlewaretoken": csrf_token(code_page)}
    )
    assert (verified.status_code, verified["Location"]) == (302, f"{CONTINUE}?token={token}")

    page = browser.get(verified["Location"])
    assert page.status_code == 200
    assert "no-store" in page["Cache-Control"]
    [form] = forms_in(page)
    assert (form.action, form.method, form.buttons) == ("/transfer/", "post", ["Continue"])
    [(token_name, fresh_token), *fields] = form.fields
    assert token_name == "csrfmiddlewaretoken"
    assert len(fresh_token) == 64
    assert fresh_token != original_token
    assert fields == [("amount", "250"), ("to", "acc-1"), ("to", "acc-2")]
    assert "data-emailotp-autosubmit" in page.content.decode()

    done = browser.post(form.action, dict_of(form.fields))
    assert (done.status_code, done.content) == (200, b"transfer ran")
    assert stepup_urls.RUNS == [("transfer", "POST", [("amount", "250"), ("to", "acc-1"), ("to", "acc-2")], [])]

    gone = browser.get(verified["Location"])
    assert gone.status_code == 410
    assert REPLAY_GONE in gone.content.decode()
    assert "no-store" in gone["Cache-Control"]
    assert len(stepup_urls.RUNS) == 1


def dict_of(fields: list[tuple[str, str]]) -> dict[str, list[str]]:
    """Form fields as the test client posts them (repeated names kept)."""
    data: dict[str, list[str]] = {}
    for name, value in fields:
        data.setdefault(name, []).append(value)
    return data


def test_replay_expires_with_the_challenge(
    alice: Client, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    with time_machine.travel(T0, tick=False) as traveller:
        kept = alice.post("/transfer/", {"amount": "1"})
        alice.get(kept["Location"])
        verified = confirm(alice, django_capture_on_commit_callbacks, mailoutbox)
        assert urlsplit(verified["Location"]).path == CONTINUE
        challenge = Challenge.objects.get()
        assert alice.session["_emailotp_replay"]["expires"] == challenge.expires_at.timestamp()
        traveller.move_to(challenge.expires_at + timedelta(seconds=1))
        gone = alice.get(verified["Location"])
    assert gone.status_code == 410
    assert REPLAY_GONE in gone.content.decode()
    assert "_emailotp_replay" not in alice.session
    assert stepup_urls.RUNS == []


def test_replay_token_from_another_form_is_refused(
    alice: Client, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    kept = alice.post("/transfer/", {"amount": "1"})
    alice.get(kept["Location"])
    confirm(alice, django_capture_on_commit_callbacks, mailoutbox)
    assert alice.get(CONTINUE, {"token": "not-the-token"}).status_code == 410
    assert alice.get(CONTINUE).status_code == 410


def test_uploaded_files_are_not_kept(
    alice: Client, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    upload = SimpleUploadedFile("statement.csv", b"a,b\n1,2\n", content_type="text/csv")
    kept = alice.post("/transfer/", {"amount": "5", "statement": upload})
    assert (kept.status_code, kept["Location"]) == (302, "/otp/verify/?purpose=step_up&next=%2Ftransfer%2F")
    assert "_emailotp_replay" not in alice.session
    alice.get(kept["Location"])
    verified = confirm(alice, django_capture_on_commit_callbacks, mailoutbox)
    assert (verified.status_code, verified["Location"]) == (302, "/transfer/")
    assert stepup_urls.RUNS == []


def test_replay_off_keeps_nothing(alice: Client, settings: Any) -> None:
    settings.EMAIL_OTP_STEP_UP_REPLAY = False
    kept = alice.post("/transfer/", {"amount": "5"})
    assert kept["Location"] == "/otp/verify/?purpose=step_up&next=%2Ftransfer%2F"
    assert "_emailotp_replay" not in alice.session


def test_single_use_post_is_replayed_once_then_prompts_again(
    alice: Client, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    kept = alice.post("/danger/", {"reason": "leaked"})
    assert urlsplit(kept["Location"]).query.startswith("purpose=danger_zone&next=%2Fdanger%2F&replay=")
    alice.get(kept["Location"])
    verified = confirm(alice, django_capture_on_commit_callbacks, mailoutbox, purpose="danger_zone")
    [form] = forms_in(alice.get(verified["Location"]))
    assert alice.post(form.action, dict_of(form.fields)).content == b"danger ran"
    # Submitting the same form again needs a new confirmation.
    again = alice.post(form.action, dict_of(form.fields))
    assert again.status_code == 302
    assert urlsplit(again["Location"]).query.startswith("purpose=danger_zone&next=%2Fdanger%2F&replay=")
    assert stepup_urls.RUNS == [("danger", "POST", [("reason", "leaked")], [])]
    assert events("step_up_required", "step_up_granted", "step_up_used") == [
        ("step_up_required", ""),
        ("step_up_granted", ""),
        ("step_up_used", ""),
        ("step_up_required", ""),
    ]


# ---------------------------------------------------------------------------------------------------------------
# CSRF, bad purposes


def test_send_and_verify_enforce_csrf(
    user: Any, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    with django_capture_on_commit_callbacks(execute=True):
        forged_send = browser.post(SEND, {"purpose": "step_up"})
    assert forged_send.status_code == 403
    assert (mailoutbox, Challenge.objects.count()) == ([], 0)

    prompt = browser.get(PROMPT)
    with django_capture_on_commit_callbacks(execute=True):
        assert browser.post(SEND, {"purpose": "step_up", "csrfmiddlewaretoken": csrf_token(prompt)}).status_code == 302
    code = code_from(mailoutbox[0])
    forged_verify = browser.post(VERIFY, {"purpose": "step_up", "code": code})
    assert forged_verify.status_code == 403
    challenge = Challenge.objects.get()
    assert (challenge.status, challenge.attempts, StepUpGrant.objects.count()) == ("pending", 0, 0)

    token = csrf_token(browser.get(PROMPT))
    assert browser.post(VERIFY, {"purpose": "step_up", "code": code, "csrfmiddlewaretoken": token}).status_code == 302
    assert StepUpGrant.objects.count() == 1


def test_send_is_post_only(alice: Client) -> None:
    assert alice.get(SEND, {"purpose": "step_up"}).status_code == 405
    assert Challenge.objects.count() == 0


@pytest.mark.parametrize("purpose", ["nope", "login", "sign_in", "verify_email", ""])
def test_unknown_or_foreign_purpose_is_refused(alice: Client, mailoutbox: list[EmailMessage], purpose: str) -> None:
    for response in (
        alice.get(VERIFY, {"purpose": purpose}),
        alice.post(SEND, {"purpose": purpose}),
        alice.post(VERIFY, {"purpose": purpose, "code": "123456"}),
    ):
        assert response.status_code == 400
        assert response.content.decode() == UNKNOWN_PURPOSE
        assert "no-store" in response["Cache-Control"]
    assert (mailoutbox, Challenge.objects.count(), events()) == ([], 0, [])


def test_project_purpose_must_be_registered(alice: Client, settings: Any) -> None:
    assert alice.get(VERIFY, {"purpose": "danger_zone"}).status_code == 200
    settings.EMAIL_OTP_PURPOSES = {}
    assert alice.get(VERIFY, {"purpose": "danger_zone"}).status_code == 400


def test_codes_are_bound_to_their_purpose(
    alice: Client, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    """A code sent for step_up is not accepted on the danger_zone page, and the other way round."""
    send_code(alice, django_capture_on_commit_callbacks, "step_up")
    response = alice.post(VERIFY, {"purpose": "danger_zone", "code": code_from(mailoutbox[0])})
    assert response.status_code == 400
    assert "Ask for a code first." in response.content.decode()
    session = alice.session
    session["_emailotp_flow"]["danger_zone"] = {"challenge": str(Challenge.objects.get().pk)}
    session.save()
    response = alice.post(VERIFY, {"purpose": "danger_zone", "code": code_from(mailoutbox[0])})
    assert response.status_code == 400
    assert "That code was not sent for this page. Ask for a new one." in response.content.decode()
    assert StepUpGrant.objects.count() == 0
    assert events("verify_failed") == [("verify_failed", "wrong_binding")]
