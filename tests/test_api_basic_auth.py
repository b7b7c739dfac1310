"""HTTP Basic clients (``curl -u``, issue 10 finding 9): codes and grants bind to a keyed hash of the verified
credential, so the right code is answered as right, and nothing binds to the password itself."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from django.core.mail import EmailMessage
from django.test import Client

from django_emailotp.models import AuditEvent, Challenge, ChallengeStatus, StepUpGrant
from tests import api_urls
from tests.conftest import code_from
from tests.test_api import api_site_fixture, clock_fixture  # noqa: F401  (fixtures)
from tests.test_issue import Capture

PASSWORD = "correct horse battery staple"
BASIC_API = "/api/basic-otp/challenges/"

pytestmark = pytest.mark.usefixtures("clock")


def basic(username: str, password: str = PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def curl(method: str, path: str, headers: dict[str, str], data: Any = None) -> Any:
    """Like curl: a new client each time, no cookies kept between requests."""
    client = Client(enforce_csrf_checks=True)
    if method == "get":
        return client.get(path, headers=headers)
    return client.post(path, data, content_type="application/json", headers=headers)


def ask_for_code(capture: Capture, outbox: list[EmailMessage], headers: dict[str, str]) -> tuple[str, str]:
    with capture(execute=True):
        created = curl("post", BASIC_API, headers, {"purpose": "step_up"})
    assert created.status_code == 202, created.content
    return created.json()["id"], code_from(outbox[-1])


def test_the_right_code_is_right_for_a_basic_client(
    user: Any, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    alice = basic("alice")
    challenge_id, code = ask_for_code(django_capture_on_commit_callbacks, mailoutbox, alice)
    verified = curl("post", f"{BASIC_API}{challenge_id}/verify/", alice, {"code": code})
    assert (verified.status_code, verified.json()) == (
        200,
        {"verified": True, "purpose": "step_up", "step_up_expires_at": "2026-03-02T09:05:00Z"},
    )
    assert Challenge.objects.get().status == ChallengeStatus.VERIFIED
    assert list(AuditEvent.objects.filter(event="verify_failed").values_list("reason", flat=True)) == []
    grant = StepUpGrant.objects.get()
    assert grant.binding == Challenge.objects.get().binding != ""

    # The grant opens step-up views for this credential, in later requests without any cookie.
    assert curl("get", "/api/basic-otp/step-up/", alice).json()["verified"] is True
    secret = curl("get", "/api/basic-secret/", alice)
    assert (secret.status_code, secret.json()) == (200, {"view": "basic-secret", "user": "alice"})
    once = curl("post", "/api/basic-decorated/", {**alice, "Accept": "application/json"})
    assert once.status_code == 200
    again = curl("post", "/api/basic-decorated/", {**alice, "Accept": "application/json"})
    assert (again.status_code, again.json()["error"]) == (401, "step_up_required")
    assert "WWW-Authenticate" not in again  # RFC 9470 is for tokens; Basic gets the JSON body only
    assert api_urls.view_runs == [("basic-secret", "alice", "session"), ("decorated", "alice", "session")]


def test_a_basic_binding_is_the_credentials_alone(
    user: Any, other_user: Any, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    alice = basic("alice")
    challenge_id, code = ask_for_code(django_capture_on_commit_callbacks, mailoutbox, alice)
    # Another account's credentials, with the right code: not theirs (answered like a wrong code).
    bob = curl("post", f"{BASIC_API}{challenge_id}/verify/", basic("bob"), {"code": code})
    assert (bob.status_code, bob.json()["error"]) == (400, "invalid_code")
    assert curl("post", f"{BASIC_API}{challenge_id}/verify/", alice, {"code": code}).status_code == 200
    # A browser session of the same user does not share the Basic client's grant.
    browser = Client()
    browser.force_login(user)
    assert browser.get("/api/secret/", headers={"Accept": "application/json"}).status_code == 401
    # A wrong password is DRF's 401, before step-up is even looked at.
    wrong = curl("get", "/api/basic-secret/", basic("alice", "not the password"))
    assert (wrong.status_code, wrong.json()) == (401, {"detail": "Invalid username/password."})


def test_the_binding_follows_the_stored_password_hash_not_the_password(
    user: Any, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    """Setting the same password again gives a new salt and hash, so a new binding: the binding is a keyed hash
    of what the database already holds, never of the password the client sent."""
    alice = basic("alice")
    ask_for_code(django_capture_on_commit_callbacks, mailoutbox, alice)
    first = Challenge.objects.get().binding
    user.set_password(PASSWORD)
    user.save()
    challenge_id, code = ask_for_code(django_capture_on_commit_callbacks, mailoutbox, alice)
    second = Challenge.objects.get(pk=challenge_id).binding
    assert first != second
    assert curl("post", f"{BASIC_API}{challenge_id}/verify/", alice, {"code": code}).status_code == 200
