"""Backup codes through the REST API, with session (CSRF enforced) and token clients: the count, a new set behind a
fresh step-up (401 without one, 201 with one), step-up with a backup code (200, 400 invalid / malformed, 429), the
grant opening protected views, the email lockout left aside, and the notices."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import time_machine
from django.core.mail import EmailMessage

from django_emailotp.models import AuditEvent, BackupCode, StepUpGrant
from tests import api_urls
from tests.test_api import (  # noqa: F401  (fixtures)
    SEE_FIELDS,
    Api,
    Flow,
    api_fixture,
    api_site_fixture,
    bob_api_fixture,
    clock_fixture,
    flow_fixture,
    iso,
    session_api,
    token_api,
)
from tests.test_api_step_up import assert_step_up_required
from tests.test_backup_codes import FULLWIDTH_CODE, INVALID, MALFORMED, SHOWN, WRONG_CODE, assert_no_code_in, dump
from tests.test_issue import T0, wrong_code

CODES = "/api/otp/backup-codes/"
USE = "/api/otp/step-up/backup-code/"
THROTTLED = "Too many wrong backup codes. Please try again later."


def new_set(api: Api, flow: Flow) -> list[str]:
    """Step up with an emailed code, then POST backup-codes/: the codes from the 201."""
    flow.step_up(api)
    with flow.capture(execute=True):
        response = api.post(CODES)
    assert response.status_code == 201, response.content
    codes: list[str] = response.json()["codes"]
    return codes


def spend(api: Api, flow: Flow, code: object, purpose: str | None = None) -> Any:
    body: dict[str, Any] = {"code": code}
    if purpose is not None:
        body["purpose"] = purpose
    with flow.capture(execute=True):
        return api.post(USE, body)


def test_count_then_a_new_set_needs_a_fresh_step_up(
    api: Api, user: Any, flow: Flow, clock: time_machine.Traveller, mailoutbox: list[EmailMessage]
) -> None:
    counted = api.get(CODES)
    assert (counted.status_code, counted.json()) == (200, {"remaining": 0})
    assert "no-store" in counted["Cache-Control"]

    # Without a grant: 401 step_up_required, nothing made, nobody emailed.
    refused = api.post(CODES)
    assert_step_up_required(refused, api)
    assert BackupCode.objects.count() == 0
    assert mailoutbox == []

    flow.step_up(api)
    with flow.capture(execute=True):
        made = api.post(CODES)
    assert made.status_code == 201
    assert "no-store" in made["Cache-Control"]
    body = made.json()
    assert sorted(body) == ["codes", "remaining"]
    codes = body["codes"]
    assert body["remaining"] == 10
    assert len(codes) == len(set(codes)) == 10
    assert all(SHOWN.match(code) for code in codes)
    rows = list(BackupCode.objects.filter(user=user))
    assert len(rows) == 10
    assert all(row.code_hash.startswith("$argon2id$") and len(row.lookup) == 8 for row in rows)
    stored = dump(BackupCode.objects.all()) + dump(AuditEvent.objects.all())
    assert not [code for code in codes if code in stored or code.replace("-", "") in stored]
    assert api.get(CODES).json() == {"remaining": 10}

    [notice] = [message for message in mailoutbox if message.subject == "Example: new backup codes"]
    assert "A new set of 10 backup codes was just created" in notice.body
    assert_no_code_in(notice, codes)
    generated = AuditEvent.objects.get(event="backup_codes_generated")
    assert (generated.user_id, generated.data) == (user.pk, {"count": 10, "revoked": 0})

    # The grant is still fresh: another set at once, and every old code stops working.
    with flow.capture(execute=True):
        again = api.post(CODES)
    assert again.status_code == 201
    assert not set(again.json()["codes"]) & set(codes)
    assert spend(api, flow, codes[0]).json()["error"] == "invalid_backup_code"

    # Once the window has passed, a new set needs a new step-up.
    clock.shift(301)
    assert_step_up_required(api.post(CODES), api)
    assert AuditEvent.objects.filter(event="backup_codes_generated").count() == 2


def test_step_up_with_a_backup_code_opens_protected_views(
    api: Api, user: Any, flow: Flow, mailoutbox: list[EmailMessage]
) -> None:
    codes = new_set(api, flow)
    StepUpGrant.objects.all().delete()  # start from no grant
    assert_step_up_required(api.get("/api/secret/"), api)
    mailoutbox.clear()

    used = spend(api, flow, codes[2].lower().replace("-", " "))
    assert used.status_code == 200
    assert used.json() == {
        "verified": True,
        "purpose": "step_up",
        "step_up_expires_at": iso(T0 + timedelta(seconds=300)),
        "backup_codes_remaining": 9,
    }
    assert "no-store" in used["Cache-Control"]
    assert api.get("/api/secret/").json() == {"view": "secret", "user": "alice"}
    assert api_urls.view_runs == [("secret", "alice", api.kind)]
    grant = AuditEvent.objects.filter(event="step_up_granted").latest("id")
    assert grant.data == {"expires_at": "2026-03-02T09:05:00+00:00", "method": "backup_code"}

    [notice] = mailoutbox
    assert notice.subject == "Example: a backup code was used"
    assert "9 backup codes are left." in notice.body
    assert_no_code_in(notice, codes)

    # Single use.
    again = spend(api, flow, codes[2])
    assert (again.status_code, again.json()) == (400, {"error": "invalid_backup_code", "message": INVALID})
    assert api.get(CODES).json() == {"remaining": 9}


def test_a_backup_code_grants_the_purpose_it_names(api: Api, flow: Flow) -> None:
    codes = new_set(api, flow)
    assert api.post("/api/danger/").status_code == 401
    used = spend(api, flow, codes[0], purpose="danger_zone")
    assert (used.status_code, used.json()["purpose"]) == (200, "danger_zone")
    assert api.post("/api/danger/").status_code == 200
    assert api.post("/api/danger/").status_code == 401  # that purpose's grant is single use
    assert StepUpGrant.objects.filter(purpose="danger_zone").count() == 1

    unknown = spend(api, flow, codes[1], purpose="login")
    assert (unknown.status_code, unknown.json()["error"]) == (400, "unsupported_purpose")
    assert api.get(CODES).json() == {"remaining": 9}


def test_wrong_and_malformed_codes_then_429(api: Api, user: Any, flow: Flow) -> None:
    codes = new_set(api, flow)
    wrong = spend(api, flow, WRONG_CODE)
    assert (wrong.status_code, wrong.json()) == (400, {"error": "invalid_backup_code", "message": INVALID})
    for malformed_code in (FULLWIDTH_CODE, codes[0][:-1]):
        malformed = spend(api, flow, malformed_code)
        assert (malformed.status_code, malformed.json()) == (400, {"error": "malformed", "message": MALFORMED})
    assert spend(api, flow, WRONG_CODE).status_code == 400
    assert spend(api, flow, WRONG_CODE).status_code == 400

    throttled = spend(api, flow, codes[0])  # the right code, after five failures
    assert throttled.status_code == 429
    retry_after = int(throttled["Retry-After"])
    assert 1 <= retry_after <= 900
    assert throttled.json() == {"error": "rate_limited", "message": THROTTLED, "retry_after": retry_after}
    assert api.get(CODES).json() == {"remaining": 10}
    failed = AuditEvent.objects.filter(event="backup_code_failed").order_by("id")
    assert list(failed.values_list("reason", flat=True)) == ["invalid", "malformed", "malformed", "invalid", "invalid"]
    assert AuditEvent.objects.get(event="rate_limited").reason == "backup_code_failures_per_user"

    # The email-code path is not throttled by it: a new emailed code still steps up.
    assert flow.step_up(api)["verified"] is True


def test_shapes_a_serializer_refuses(api: Api, flow: Flow) -> None:
    new_set(api, flow)
    refusals = [
        ({}, "This field is required."),
        ({"code": ["ABCDE-FGHJK"]}, "Must be a string."),
        ({"code": 1234567890}, "Must be a string."),
        ({"code": "A" * 65}, "Ensure this field has no more than 64 characters."),
    ]
    for body, field_error in refusals:
        with flow.capture(execute=True):
            response = api.post(USE, body)
        assert (response.status_code, response.json()) == (
            400,
            {"error": "malformed", "message": SEE_FIELDS, "field_errors": {"code": [field_error]}},
        )
    assert api.get(CODES).json() == {"remaining": 10}


def test_backup_codes_step_up_while_the_email_path_is_locked(
    api: Api, flow: Flow, settings: Any, mailoutbox: list[EmailMessage]
) -> None:
    codes = new_set(api, flow)
    settings.EMAIL_OTP_LOCKOUT_THRESHOLD = 1
    body, code = flow.create(api)
    with flow.capture(execute=True):
        assert api.post(f"{api.prefix}{body['id']}/verify/", {"code": wrong_code(code)}).status_code == 400
    locked = api.post(api.prefix, {"purpose": "step_up"})
    assert (locked.status_code, locked.json()["error"]) == (429, "locked_out")
    StepUpGrant.objects.all().delete()
    assert_step_up_required(api.get("/api/secret/"), api)

    used = spend(api, flow, codes[0])
    assert used.status_code == 200
    assert api.get("/api/secret/").status_code == 200
    assert api.post(api.prefix, {"purpose": "step_up"}).status_code == 429  # the lockout itself stands


def test_anonymous_clients_are_refused(client: Any, db: None) -> None:
    anonymous = {"error": "not_authenticated", "message": "Authentication credentials were not provided."}
    counted = client.get(CODES)
    assert (counted.status_code, counted.json()) == (403, anonymous)
    used = client.post(USE, {"code": WRONG_CODE}, content_type="application/json")
    assert (used.status_code, used.json()) == (403, anonymous)
    assert AuditEvent.objects.filter(event__startswith="backup_code").count() == 0


def test_session_clients_need_the_csrf_header(user: Any, flow: Flow, clock: time_machine.Traveller) -> None:
    api = session_api(user)
    codes = new_set(api, flow)
    without = api.client.post(USE, {"code": codes[0]}, content_type="application/json")
    assert without.status_code == 403
    assert api.get(CODES).json() == {"remaining": 10}
    assert AuditEvent.objects.filter(event__in=["backup_code_used", "backup_code_failed"]).count() == 0
