"""Bounded parsing (SECURITY.md rule 20, issue 10 finding 5): JSON nested deeper than the API's limit is a 400
``too_deep`` on every endpoint, anonymous ``login/`` included, never a RecursionError and a 500."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from tests.test_api import (  # noqa: F401  (fixtures)
    Api,
    Flow,
    api_fixture,
    api_site_fixture,
    clock_fixture,
    flow_fixture,
    row_counts,
)

TOO_DEEP = {"error": "too_deep", "message": "The JSON body is nested deeper than 32 levels."}
# What the attack pass sent: 948 nested arrays, 1.9 KB.
ARRAYS_948 = "[" * 948 + "]" * 948
# Nested objects, deeper than Python's default recursion limit.
OBJECTS_2000 = '{"a": ' * 2000 + "1" + "}" * 2000
CHALLENGE = "/api/otp/challenges/5f0c6b1e-8f7a-4a51-9a55-0a4f2b8f3c11/"
# Every endpoint that reads a body.
POST_ENDPOINTS = [
    "/api/otp/challenges/",
    f"{CHALLENGE}verify/",
    "/api/otp/step-up/backup-code/",
    "/api/otp/login/",
    "/api/otp/login/verify/",
    "/api/otp/login/backup-code/",
    "/api/otp/email/",
    "/api/otp/email/verify/",
]


def nested(depth: int, innermost: Any = 1) -> Any:
    value = innermost
    for level in range(depth):
        value = [value] if level % 2 else {"a": value}
    return value


def test_anonymous_login_with_948_nested_arrays_is_400(db: None) -> None:
    assert len(ARRAYS_948.encode()) == 1896
    response = Client().post("/api/otp/login/", ARRAYS_948, content_type="application/json")
    assert (response.status_code, response.json()) == (400, TOO_DEEP)
    assert row_counts() == (0, 0, 0)


@pytest.mark.parametrize("body", [ARRAYS_948, OBJECTS_2000], ids=["948-arrays", "2000-objects"])
@pytest.mark.parametrize("path", POST_ENDPOINTS)
def test_every_endpoint_answers_400_too_deep(api: Api, path: str, body: str) -> None:
    response = api.post(path, body)
    assert (response.status_code, response.json()) == (400, TOO_DEEP)
    assert row_counts() == (0, 0, 0)


@pytest.mark.parametrize("path", [f"{CHALLENGE}resend/", "/api/otp/backup-codes/"])
def test_endpoints_that_take_no_body(api: Api, path: str) -> None:
    """resend/ and backup-codes/ take no body: a token client's deep one is never parsed, and changes nothing about
    the answer; a session client's is parsed by DRF's CSRF check (it reads the form), so it is refused."""
    empty = api.post(path)
    response = api.post(path, ARRAYS_948)
    if api.kind == "session":
        assert (response.status_code, response.json()) == (400, TOO_DEEP)
    else:
        assert (response.status_code, response.json()) == (empty.status_code, empty.json())
        assert response.status_code == (404 if path.endswith("resend/") else 401)


def test_depth_32_is_parsed_and_33_is_not(api: Api, flow: Flow) -> None:
    created, code = flow.create(api)
    verify = f"/api/otp/challenges/{created['id']}/verify/"
    # 32 levels: the body object and 31 inside a field. Parsed, then refused by the serializer as not a string.
    deep_field = api.post(verify, json.dumps({"code": nested(31), "x": 1}))
    assert deep_field.status_code == 400
    assert deep_field.json()["error"] == "malformed"
    assert deep_field.json()["field_errors"] == {"code": ["Must be a string."]}
    too_deep = api.post(verify, json.dumps({"code": code, "x": nested(32)}))
    assert (too_deep.status_code, too_deep.json()) == (400, TOO_DEEP)
    # Brackets inside strings are text, not nesting.
    text = api.post(verify, json.dumps({"code": code, "note": "[" * 100 + "{" * 100}))
    assert (text.status_code, text.json()["verified"]) == (200, True)


def test_escaped_quotes_and_backslashes_are_read_as_json_reads_them(api: Api, flow: Flow) -> None:
    created, code = flow.create(api)
    verify = f"/api/otp/challenges/{created['id']}/verify/"
    # An escaped quote does not end the string: the brackets after it are still text.
    inside = api.post(verify, json.dumps({"code": code, "note": '\\"' + "[" * 40}))
    assert (inside.status_code, inside.json()["verified"]) == (200, True)
    # An escaped backslash does: the brackets after the closing quote nest.
    after = api.post(verify, '{"note": "\\\\", "x": ' + json.dumps(nested(32)) + "}")
    assert (after.status_code, after.json()) == (400, TOO_DEEP)


def test_an_unclosed_string_of_escaped_quotes_is_refused_at_once(api: Api) -> None:
    """'"\\"\\"\\"...' without a closing quote: a scan that retried from every quote would take hours here."""
    body = "[" * 40 + '"' + '\\"' * 200_000
    response = api.post("/api/otp/challenges/", body)
    assert (response.status_code, response.json()) == (400, TOO_DEEP)


def test_unbalanced_brackets_are_still_a_parse_error(api: Api) -> None:
    response = api.post("/api/otp/challenges/", "]]]" + "[" * 10)
    assert response.status_code == 400
    assert response.json()["error"] == "malformed"
    assert response.json()["message"].startswith("JSON parse error - ")
