"""Step-up grants through HTTP: the window and its boundaries, sliding renewal, purpose scoping, single use,
revocation on logout and password change, binding to one session, and ``request.emailotp``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
import time_machine
from django.core.mail import EmailMessage
from django.test import Client

from django_emailotp.models import AuditEvent, StepUpGrant
from tests import stepup_urls
from tests.test_issue import T0, Capture
from tests.test_step_up_views import alice_fixture, confirm, events, stepup_site_fixture  # noqa: F401  (fixtures)

BARE_PROMPT = "/otp/verify/?purpose=step_up&next=%2Fbare%2F"


@pytest.fixture
def granted(
    alice: Client, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> Iterator[time_machine.Traveller]:
    """alice holds a step_up grant made at T0 (clock frozen; move it with the yielded traveller)."""
    with time_machine.travel(T0, tick=False) as traveller:
        assert confirm(alice, django_capture_on_commit_callbacks, mailoutbox).status_code == 302
        grant = StepUpGrant.objects.get()
        assert (grant.verified_at, grant.expires_at) == (T0, T0 + timedelta(seconds=300))
        yield traveller


def passes(client: Client, path: str) -> bool:
    response = client.get(path)
    assert response.status_code in (200, 302)
    return response.status_code == 200


# ---------------------------------------------------------------------------------------------------------------
# The window


@pytest.mark.parametrize(
    ("path", "window"),
    [("/bare/", 300), ("/strict/", 60), ("/mixin/", 120)],
    ids=["default-window", "decorator-max-age-60", "mixin-max-age-120"],
)
def test_window_boundary(alice: Client, granted: time_machine.Traveller, path: str, window: int) -> None:
    # find_step_up_grant: verified_at > now - window, so the last valid instant is one tick before the window ends.
    granted.move_to(T0 + timedelta(seconds=window - 1))
    assert passes(alice, path)
    granted.move_to(T0 + timedelta(seconds=window, microseconds=-1))
    assert passes(alice, path)
    granted.move_to(T0 + timedelta(seconds=window))
    response = alice.get(path)
    assert (response.status_code, response["Location"]) == (
        302,
        f"/otp/verify/?purpose=step_up&next={quote(path, safe='')}",
    )
    assert [name for name, *_ in stepup_urls.RUNS] == [path.strip("/")] * 2


def test_stricter_decorator_window_leaves_the_default_one_open(alice: Client, granted: time_machine.Traveller) -> None:
    granted.move_to(T0 + timedelta(seconds=60))
    assert not passes(alice, "/strict/")
    assert passes(alice, "/bare/")
    granted.move_to(T0 + timedelta(seconds=299))
    assert passes(alice, "/bare/")
    assert [name for name, *_ in stepup_urls.RUNS] == ["bare", "bare"]


def test_max_age_longer_than_the_grant_is_capped_by_its_expiry(
    alice: Client, granted: time_machine.Traveller, settings: Any
) -> None:
    """A grant never outlives EMAIL_OTP_STEP_UP_MAX_AGE as it was when the grant was made."""
    settings.EMAIL_OTP_STEP_UP_MAX_AGE = 600
    granted.move_to(T0 + timedelta(seconds=300))
    assert not passes(alice, "/bare/")


def test_without_sliding_use_does_not_renew(alice: Client, granted: time_machine.Traveller) -> None:
    granted.move_to(T0 + timedelta(seconds=200))
    assert passes(alice, "/bare/")
    grant = StepUpGrant.objects.get()
    assert (grant.verified_at, grant.expires_at) == (T0, T0 + timedelta(seconds=300))
    granted.move_to(T0 + timedelta(seconds=300))
    assert not passes(alice, "/bare/")


def test_sliding_renews_on_use(alice: Client, granted: time_machine.Traveller, settings: Any) -> None:
    settings.EMAIL_OTP_STEP_UP_SLIDING = True
    used = T0 + timedelta(seconds=200)
    granted.move_to(used)
    assert passes(alice, "/bare/")
    grant = StepUpGrant.objects.get()
    assert (grant.verified_at, grant.expires_at) == (used, used + timedelta(seconds=300))
    granted.move_to(used + timedelta(seconds=299))
    assert passes(alice, "/bare/")
    # Each use renews; idle for a whole window and it ends.
    last = used + timedelta(seconds=299)
    granted.move_to(last + timedelta(seconds=300))
    assert not passes(alice, "/bare/")


def test_sliding_does_not_rescue_an_expired_grant(
    alice: Client, granted: time_machine.Traveller, settings: Any
) -> None:
    settings.EMAIL_OTP_STEP_UP_SLIDING = True
    granted.move_to(T0 + timedelta(seconds=300))
    assert not passes(alice, "/bare/")
    assert StepUpGrant.objects.get().verified_at == T0


# ---------------------------------------------------------------------------------------------------------------
# Purpose scoping and single use


def test_step_up_grant_does_not_open_another_purpose(alice: Client, granted: time_machine.Traveller) -> None:
    response = alice.get("/danger/")
    assert (response.status_code, response["Location"]) == (302, "/otp/verify/?purpose=danger_zone&next=%2Fdanger%2F")
    assert stepup_urls.RUNS == []
    assert AuditEvent.objects.filter(event="step_up_required").get().purpose == "danger_zone"


def test_purpose_grant_does_not_open_step_up(
    alice: Client, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    alice.get("/otp/verify/?purpose=danger_zone&next=%2Fdanger%2F")
    verified = confirm(alice, django_capture_on_commit_callbacks, mailoutbox, purpose="danger_zone")
    assert verified["Location"] == "/danger/"
    assert StepUpGrant.objects.get().purpose == "danger_zone"
    assert alice.get("/bare/")["Location"] == BARE_PROMPT


def test_single_use_grant_lets_exactly_one_request_through(
    alice: Client, user: Any, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    with time_machine.travel(T0, tick=False) as traveller:
        confirm(alice, django_capture_on_commit_callbacks, mailoutbox, purpose="danger_zone")
        traveller.shift(5)
        first = alice.get("/danger/")
        assert (first.status_code, first.content) == (200, b"danger ran")
        grant = StepUpGrant.objects.get()
        assert grant.consumed_at == T0 + timedelta(seconds=5)
        second = alice.get("/danger/")
        assert (second.status_code, second["Location"]) == (302, "/otp/verify/?purpose=danger_zone&next=%2Fdanger%2F")
    assert stepup_urls.RUNS == [("danger", "GET", [], [])]
    used = AuditEvent.objects.get(event="step_up_used")
    assert (used.user_id, used.purpose, used.challenge_id, used.data) == (
        user.pk,
        "danger_zone",
        grant.challenge_id,
        {"path": "/danger/"},
    )
    assert events("step_up_granted", "step_up_used", "step_up_required") == [
        ("step_up_granted", ""),
        ("step_up_used", ""),
        ("step_up_required", ""),
    ]


def test_a_new_code_makes_a_fresh_single_use_grant(
    alice: Client, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage], settings: Any
) -> None:
    settings.EMAIL_OTP_RESEND_COOLDOWN = 0
    confirm(alice, django_capture_on_commit_callbacks, mailoutbox, purpose="danger_zone")
    assert passes(alice, "/danger/")
    confirm(alice, django_capture_on_commit_callbacks, mailoutbox, purpose="danger_zone")
    assert StepUpGrant.objects.get().consumed_at is None  # one row per session and purpose, replaced
    assert passes(alice, "/danger/")
    assert not passes(alice, "/danger/")


# ---------------------------------------------------------------------------------------------------------------
# Revocation and binding


def test_logout_revokes_the_sessions_grants(
    alice: Client, user: Any, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    confirm(alice, django_capture_on_commit_callbacks, mailoutbox)
    confirm(alice, django_capture_on_commit_callbacks, mailoutbox, purpose="danger_zone")
    assert StepUpGrant.objects.count() == 2
    response = alice.post("/accounts/logout/")
    assert (response.status_code, response["Location"]) == (302, "/home/")
    assert StepUpGrant.objects.count() == 0
    revoked = AuditEvent.objects.get(event="step_up_revoked")
    assert (revoked.user_id, revoked.outcome, revoked.data) == (user.pk, "info", {"grants": 2})
    alice.force_login(user)
    assert alice.get("/bare/")["Location"] == BARE_PROMPT


def test_logout_leaves_other_sessions_grants(
    alice: Client, user: Any, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    phone = Client()
    phone.force_login(user)
    confirm(phone, django_capture_on_commit_callbacks, mailoutbox)
    confirm(alice, django_capture_on_commit_callbacks, mailoutbox)
    alice.post("/accounts/logout/")
    assert AuditEvent.objects.get(event="step_up_revoked").data == {"grants": 1}
    assert passes(phone, "/bare/")


def test_logout_without_grants_records_nothing(alice: Client) -> None:
    alice.post("/accounts/logout/")
    assert events("step_up_revoked") == []


def test_password_change_ends_the_grant(
    alice: Client, user: Any, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    confirm(alice, django_capture_on_commit_callbacks, mailoutbox)
    assert passes(alice, "/bare/")
    changed = alice.post("/accounts/password/", {"password": "a brand new passphrase"})
    assert (changed.status_code, changed.content) == (200, b"password changed")
    # Still signed in (update_session_auth_hash), still the same session binding, but the grant no longer counts.
    assert alice.get("/plain/").content == b"plain ran"
    assert StepUpGrant.objects.count() == 1
    assert alice.get("/bare/")["Location"] == BARE_PROMPT
    # A new code in the same session works again.
    confirm(alice, django_capture_on_commit_callbacks, mailoutbox)
    assert passes(alice, "/bare/")


def test_grant_is_bound_to_its_session(
    alice: Client, user: Any, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    confirm(alice, django_capture_on_commit_callbacks, mailoutbox)
    assert passes(alice, "/bare/")
    other = Client()
    other.force_login(user)
    assert other.get("/bare/")["Location"] == BARE_PROMPT
    # Even once the second browser has a binding of its own (it asked for a code), alice's grant is not its grant.
    with django_capture_on_commit_callbacks(execute=True):
        other.post("/otp/send/", {"purpose": "step_up"})
    assert other.get("/bare/")["Location"] == BARE_PROMPT
    assert passes(alice, "/bare/")


def test_grant_does_not_follow_the_session_to_another_user(
    alice: Client, other_user: Any, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    confirm(alice, django_capture_on_commit_callbacks, mailoutbox)
    alice.force_login(other_user)
    assert alice.get("/bare/")["Location"] == BARE_PROMPT


# ---------------------------------------------------------------------------------------------------------------
# request.emailotp


def test_request_emailotp_without_a_grant(alice: Client) -> None:
    assert alice.get("/state/").json() == {
        "is_verified": False,
        "is_verified_60": False,
        "is_verified_danger_zone": False,
        "expires_at": None,
    }


def test_request_emailotp_reports_the_grant(alice: Client, granted: time_machine.Traveller) -> None:
    state = {
        "is_verified": True,
        "is_verified_60": True,
        "is_verified_danger_zone": False,
        "expires_at": (T0 + timedelta(seconds=300)).isoformat(),
    }
    assert alice.get("/state/").json() == state
    granted.move_to(T0 + timedelta(seconds=60))
    assert alice.get("/state/").json() == {**state, "is_verified_60": False}
    granted.move_to(T0 + timedelta(seconds=300))
    assert alice.get("/state/").json() == {**state, "is_verified": False, "is_verified_60": False, "expires_at": None}
