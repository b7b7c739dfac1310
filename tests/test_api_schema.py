"""The OpenAPI 3 schema at api/otp/schema/: every operation, an example for every response, every error code, and
the committed copy in docs/openapi.json kept equal to what the code generates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from django_emailotp.api.errors import ErrorCode

COMMITTED = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"
OPERATIONS = {
    ("post", "/api/otp/challenges/"): "emailotp_challenge_create",
    ("post", "/api/otp/challenges/{challenge_id}/verify/"): "emailotp_challenge_verify",
    ("post", "/api/otp/challenges/{challenge_id}/resend/"): "emailotp_challenge_resend",
    ("get", "/api/otp/step-up/"): "emailotp_step_up_status",
    ("post", "/api/otp/step-up/backup-code/"): "emailotp_step_up_backup_code",
    ("get", "/api/otp/backup-codes/"): "emailotp_backup_codes_count",
    ("post", "/api/otp/backup-codes/"): "emailotp_backup_codes_generate",
    ("get", "/api/otp/login/"): "emailotp_login_status",
    ("post", "/api/otp/login/"): "emailotp_login",
    ("post", "/api/otp/login/verify/"): "emailotp_login_verify",
    ("post", "/api/otp/login/backup-code/"): "emailotp_login_backup_code",
    ("post", "/api/otp/email/"): "emailotp_email_request",
    ("post", "/api/otp/email/verify/"): "emailotp_email_verify",
}


@pytest.fixture(scope="module")
def schema(django_db_blocker: Any) -> dict[str, Any]:
    with django_db_blocker.unblock():
        response = Client().get("/api/otp/schema/", {"format": "json"})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/vnd.oai.openapi+json"
    return json.loads(response.content)


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, operation) for path, item in schema["paths"].items() for method, operation in item.items()]


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    return schema["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else node


def error_codes(schema: dict[str, Any]) -> list[str]:
    """The enum of Error.error (drf-spectacular makes it a component of its own)."""
    [ref] = schema["components"]["schemas"]["Error"]["properties"]["error"]["allOf"]
    return resolve(schema, ref)["enum"]


def test_openapi_3_with_every_operation(schema: dict[str, Any]) -> None:
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"] == "django-emailotp API"
    assert {(method, path): op["operationId"] for method, path, op in operations(schema)} == OPERATIONS


def test_the_yaml_rendering_is_served_too(db: None) -> None:
    response = Client().get("/api/otp/schema/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/vnd.oai.openapi; charset=utf-8"
    assert b"operationId: emailotp_challenge_verify" in response.content


def test_success_bodies_match_the_issue(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    assert set(components["Challenge"]["properties"]) == {
        "id",
        "purpose",
        "expires_at",
        "resend_available_at",
        "email_hint",
    }
    assert set(components["Verified"]["properties"]) == {"verified", "purpose", "step_up_expires_at", "token"}
    assert components["Verified"]["required"] == ["purpose", "step_up_expires_at", "verified"]
    assert set(components["ChallengeCreate"]["properties"]) == {"purpose", "email", "action"}
    assert components["ChallengeCreate"]["properties"]["action"]["maxLength"] == 500
    assert set(components["LoginChallenge"]["properties"]) == {
        "second_factor_required",
        "id",
        "purpose",
        "expires_at",
        "resend_available_at",
        "email_hint",
    }
    assert set(components["LoggedIn"]["properties"]) == {"logged_in", "token"}
    assert set(components["EmailVerified"]["properties"]) == {"verified", "email", "changed"}
    assert components["ChallengeCreate"]["required"] == ["purpose"]
    assert "token" not in components["BackupCodeVerified"]["properties"]
    assert set(components["StepUpStatus"]["properties"]) == {"verified", "expires_at", "max_age"}
    statuses = {
        (method, path): sorted(code for code in op["responses"] if code.startswith("2"))
        for method, path, op in operations(schema)
    }
    assert statuses == {
        ("post", "/api/otp/challenges/"): ["202"],
        ("post", "/api/otp/challenges/{challenge_id}/verify/"): ["200"],
        ("post", "/api/otp/challenges/{challenge_id}/resend/"): ["202"],
        ("get", "/api/otp/step-up/"): ["200"],
        ("post", "/api/otp/step-up/backup-code/"): ["200"],
        ("get", "/api/otp/backup-codes/"): ["200"],
        ("post", "/api/otp/backup-codes/"): ["201"],
        ("get", "/api/otp/login/"): ["200"],
        ("post", "/api/otp/login/"): ["200", "202"],
        ("post", "/api/otp/login/verify/"): ["200"],
        ("post", "/api/otp/login/backup-code/"): ["200"],
        ("post", "/api/otp/email/"): ["202"],
        ("post", "/api/otp/email/verify/"): ["200"],
    }


def test_every_response_has_examples_that_fit_its_schema(schema: dict[str, Any]) -> None:
    for method, path, operation in operations(schema):
        for status, response in operation["responses"].items():
            content = response["content"]["application/json"]
            body_schema = resolve(schema, content["schema"])
            assert content.get("examples"), f"{method} {path} {status} has no example"
            for example in content["examples"].values():
                value = example["value"]
                assert set(body_schema["required"]) <= set(value), (method, path, status, value)
                assert set(value) <= set(body_schema["properties"]), (method, path, status, value)
                if "error" in value:
                    assert status >= "400"
                    assert value["error"] in error_codes(schema)


def test_every_error_code_is_in_the_schema(schema: dict[str, Any]) -> None:
    error = schema["components"]["schemas"]["Error"]["properties"]["error"]
    assert sorted(error_codes(schema)) == sorted(str(code) for code in ErrorCode)
    in_examples = {
        example["value"]["error"]
        for _method, _path, operation in operations(schema)
        for response in operation["responses"].values()
        for example in response["content"]["application/json"]["examples"].values()
        if "error" in example["value"]
    }
    # step_up_required too: making a new set of backup codes needs a fresh step-up.
    assert in_examples == {str(code) for code in ErrorCode}
    assert "step_up_required" in error["description"]


def test_verify_documents_each_verification_error(schema: dict[str, Any]) -> None:
    verify = schema["paths"]["/api/otp/challenges/{challenge_id}/verify/"]["post"]
    examples = verify["responses"]["400"]["content"]["application/json"]["examples"].values()
    assert {example["value"]["error"] for example in examples} == {
        "invalid_code",
        "expired",
        "used",
        "burned",
        "superseded",
        "malformed",
    }
    create = schema["paths"]["/api/otp/challenges/"]["post"]
    too_many = create["responses"]["429"]["content"]["application/json"]["examples"].values()
    [rate_limited] = [example["value"] for example in too_many if example["value"]["error"] == "rate_limited"]
    assert rate_limited["retry_after"] == 42


def test_both_credentials_are_described(schema: dict[str, Any]) -> None:
    schemes = schema["components"]["securitySchemes"]
    assert schemes["tokenAuth"] == {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": 'Token-based authentication with required prefix "Token"',
    }
    assert schemes["cookieAuth"]["in"] == "cookie"
    for _method, path, operation in operations(schema):
        # The login endpoints are for anonymous clients: no credential ({}) is accepted too.
        anonymous: list[dict[str, Any]] = [{}] if path.startswith("/api/otp/login/") else []
        assert operation["security"] == [{"cookieAuth": []}, {"tokenAuth": []}, *anonymous]


def test_the_committed_copy_is_current(schema: dict[str, Any]) -> None:
    committed = json.loads(COMMITTED.read_text())
    assert committed == schema, (
        "docs/openapi.json differs from the schema the code generates: run `make schema` and commit the result"
    )
