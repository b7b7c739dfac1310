"""One end-to-end walk through the REST API with a DRF token, the way a mobile app uses it.

The thorough per-endpoint and per-error tests live in test_api*.py; this one follows a client from the 401 step-up
challenge to the protected resource, so the pieces are shown working together.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.core.mail import EmailMessage
from django.test import Client
from rest_framework.authtoken.models import Token

from django_emailotp.models import AuditEvent, Challenge, StepUpGrant
from tests.conftest import code_from

pytestmark = pytest.mark.django_db

RFC9470 = (
    'Token error="insufficient_user_authentication", '
    'error_description="A fresh email one-time code is required", max_age="300"'
)


def test_a_token_client_steps_up_and_reaches_the_protected_resource(
    user: Any, mailoutbox: list[EmailMessage], django_capture_on_commit_callbacks: Any
) -> None:
    client = Client()
    token = Token.objects.create(user=user)
    auth = {"HTTP_AUTHORIZATION": f"Token {token.key}"}

    denied = client.get("/api/demo/secret/", **auth)
    assert denied.status_code == 401
    assert denied["WWW-Authenticate"] == RFC9470
    assert denied.json() == {
        "error": "step_up_required",
        "message": "Confirm it is you with a code sent to your email address first.",
        "purpose": "step_up",
        "max_age": 300,
        "challenge_url": "/api/otp/challenges/",
    }
    assert client.get("/api/otp/step-up/", **auth).json() == {"verified": False, "expires_at": None, "max_age": 300}

    with django_capture_on_commit_callbacks(execute=True):
        created = client.post("/api/otp/challenges/", {"purpose": "step_up"}, content_type="application/json", **auth)
    assert created.status_code == 202
    body = created.json()
    challenge = Challenge.objects.get()
    assert body["id"] == str(challenge.pk)
    assert (body["purpose"], body["email_hint"]) == ("step_up", "a***@example.com")
    assert len(mailoutbox) == 1

    again = client.post("/api/otp/challenges/", {"purpose": "step_up"}, content_type="application/json", **auth)
    assert (again.status_code, again["Retry-After"]) == (429, "60")
    assert again.json() == {
        "error": "rate_limited",
        "message": "Please wait 60 seconds before asking for another code.",
        "retry_after": 60,
    }

    verify_url = f"/api/otp/challenges/{challenge.pk}/verify/"
    wrong = client.post(verify_url, {"code": "12 34"}, content_type="application/json", **auth)
    assert wrong.status_code == 400
    assert wrong.json() == {
        "error": "malformed",
        "message": "Enter the code as digits only, for example 123456.",
        "field_errors": {"code": ["Enter the code as digits only, for example 123456."]},
    }
    typed = client.post(verify_url, {"code": 123456}, content_type="application/json", **auth)
    assert typed.json() == {
        "error": "malformed",
        "message": "The request is not valid; see fields.",
        "field_errors": {"code": ["Must be a string."]},
    }

    verified = client.post(verify_url, {"code": code_from(mailoutbox[0])}, content_type="application/json", **auth)
    assert verified.status_code == 200
    grant = StepUpGrant.objects.get()
    assert verified.json() == {
        "verified": True,
        "purpose": "step_up",
        "step_up_expires_at": grant.expires_at.isoformat().replace("+00:00", "Z"),
    }

    allowed = client.get("/api/demo/secret/", **auth)
    assert (allowed.status_code, allowed.json()) == (200, {"secret": "the demo's protected data", "user": "alice"})
    status = client.get("/api/otp/step-up/", **auth).json()
    assert status["verified"] is True

    # The grant is bound to the token: the same user's browser session is still asked to step up.
    browser = Client()
    browser.force_login(user)
    assert browser.get("/api/demo/secret/", HTTP_ACCEPT="application/json").status_code == 401

    assert list(AuditEvent.objects.order_by("id").values_list("event", "reason")) == [
        ("step_up_required", ""),
        ("challenge_issued", ""),
        ("challenge_sent", ""),
        ("resend_throttled", ""),
        ("verify_failed", "malformed"),
        ("verify_succeeded", ""),
        ("step_up_granted", ""),
        ("step_up_required", ""),
    ]


def test_schema_describes_every_operation(client: Client) -> None:
    response = client.get("/api/otp/schema/?format=json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert sorted(paths) == [
        "/api/otp/backup-codes/",
        "/api/otp/challenges/",
        "/api/otp/challenges/{challenge_id}/resend/",
        "/api/otp/challenges/{challenge_id}/verify/",
        "/api/otp/email/",
        "/api/otp/email/verify/",
        "/api/otp/login/",
        "/api/otp/login/backup-code/",
        "/api/otp/login/verify/",
        "/api/otp/step-up/",
        "/api/otp/step-up/backup-code/",
    ]


def test_schema_needs_no_project_schema_setting(client: Client, settings: Any) -> None:
    """A project that has not made drf-spectacular its DEFAULT_SCHEMA_CLASS still gets the schema, not a 500."""
    settings.REST_FRAMEWORK = {k: v for k, v in settings.REST_FRAMEWORK.items() if k != "DEFAULT_SCHEMA_CLASS"}
    response = client.get("/api/otp/schema/?format=json")
    assert response.status_code == 200
    assert "/api/otp/challenges/" in response.json()["paths"]


def test_protecting_every_api_url_leaves_the_step_up_api_reachable(
    user: Any, mailoutbox: list[EmailMessage], django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    """With EMAIL_OTP_PROTECTED_URLS = [r"^/api/"] the client must still be able to step up through the API."""
    settings.EMAIL_OTP_PROTECTED_URLS = [r"^/api/"]
    client = Client()
    auth = {"HTTP_AUTHORIZATION": f"Token {Token.objects.create(user=user).key}"}
    assert client.get("/api/demo/secret/", **auth).status_code == 401
    with django_capture_on_commit_callbacks(execute=True):
        created = client.post("/api/otp/challenges/", {"purpose": "step_up"}, content_type="application/json", **auth)
    assert created.status_code == 202
    verify_url = f"/api/otp/challenges/{created.json()['id']}/verify/"
    verified = client.post(verify_url, {"code": code_from(mailoutbox[0])}, content_type="application/json", **auth)
    assert verified.status_code == 200
    assert client.get("/api/demo/secret/", **auth).status_code == 200
