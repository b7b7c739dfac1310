"""Lockouts: consecutive wrong codes across codes and sessions lock the user's email-code path, for a while.

What is locked (issue and verify, HTML and API), what is not (login, the rest of the site), how long (doubling,
capped, never permanent), who is told (an email, a signal, the audit trail) and how it is lifted early.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import pytest
import time_machine
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, connection, transaction
from django.test import Client, override_settings

from django_emailotp import signals
from django_emailotp.exceptions import LockedOut
from django_emailotp.models import AuditEvent, AuditEventType, Challenge, Lockout
from django_emailotp.services import VerifyReason, issue_challenge, lift_lockout, verify_challenge
from tests.conftest import code_from
from tests.factories import UserFactory

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
WRONG = "000000"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
NOTICE_SUBJECT = "Example: sign-in codes paused after wrong attempts"


@pytest.fixture(autouse=True)
def no_cooldown(settings: Any) -> None:
    settings.EMAIL_OTP_RESEND_COOLDOWN = 0


@pytest.fixture
def clock() -> Iterator[Any]:
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


@pytest.fixture
def heard() -> Iterator[dict[str, list[dict[str, Any]]]]:
    calls: dict[str, list[dict[str, Any]]] = {"locked": [], "lifted": []}

    def locked(sender: Any, **kwargs: Any) -> None:
        calls["locked"].append(kwargs)

    def lifted(sender: Any, **kwargs: Any) -> None:
        calls["lifted"].append(kwargs)

    signals.user_locked_out.connect(locked, dispatch_uid="test-locked")
    signals.lockout_lifted.connect(lifted, dispatch_uid="test-lifted")
    yield calls
    signals.user_locked_out.disconnect(dispatch_uid="test-locked")
    signals.lockout_lifted.disconnect(dispatch_uid="test-lifted")


def notices() -> list[mail.EmailMessage]:
    return [m for m in mail.outbox if m.subject == NOTICE_SUBJECT]


def signed_in(user: Any) -> Client:
    client = Client(HTTP_USER_AGENT=FIREFOX, REMOTE_ADDR="203.0.113.5")
    client.force_login(user)
    return client


def send(client: Client, capture: Any) -> Any:
    with capture(execute=True):
        return client.post("/otp/send/", {"purpose": "step_up"})


def guess(client: Client, capture: Any, code: str = WRONG) -> Any:
    with capture(execute=True):
        return client.post("/otp/verify/", {"purpose": "step_up", "code": code})


def wrong_codes(user: Any, capture: Any, count: int) -> list[VerifyReason | None]:
    """``count`` wrong codes through the service, on as many fresh (unbound) challenges as they need."""
    reasons: list[VerifyReason | None] = []
    while len(reasons) < count:
        with capture(execute=True):
            challenge = issue_challenge(user=user, purpose="step_up")
        for _ in range(min(challenge.max_attempts, count - len(reasons))):
            with capture(execute=True):
                reasons.append(verify_challenge(challenge.pk, WRONG).reason)
    return reasons


@pytest.mark.django_db
def test_ten_wrong_codes_across_codes_and_sessions_lock_once_and_tell_the_user(
    user: Any, django_capture_on_commit_callbacks: Any, clock: Any, heard: dict[str, list[Any]]
) -> None:
    laptop, phone = signed_in(user), signed_in(user)
    send(laptop, django_capture_on_commit_callbacks)
    for _ in range(4):
        assert guess(laptop, django_capture_on_commit_callbacks).status_code == 400
    send(laptop, django_capture_on_commit_callbacks)  # a resend does not reset the count
    assert guess(laptop, django_capture_on_commit_callbacks).status_code == 400
    send(phone, django_capture_on_commit_callbacks)
    for _ in range(4):
        assert guess(phone, django_capture_on_commit_callbacks).status_code == 400
    assert Lockout.objects.get(user=user).consecutive_failures == 9
    assert notices() == []

    tenth = guess(phone, django_capture_on_commit_callbacks)
    locked_until = START + timedelta(seconds=900)
    assert tenth.status_code == 400  # answered as the wrong code it was; the next request hears of the lock
    eleventh = guess(laptop, django_capture_on_commit_callbacks)
    assert (eleventh.status_code, eleventh["Retry-After"]) == (429, "900")
    lockout = Lockout.objects.get(user=user)
    assert (lockout.consecutive_failures, lockout.lock_count, lockout.locked_until) == (0, 1, locked_until)
    [event] = AuditEvent.objects.filter(event=AuditEventType.LOCKED_OUT)
    assert (event.user_id, event.data) == (user.pk, {"locked_until": locked_until.isoformat()})
    assert [(c["user"], c["locked_until"]) for c in heard["locked"]] == [(user, locked_until)]

    [notice] = notices()
    assert notice.to == ["alice@example.com"]
    assert "until 2026-03-02 09:15 UTC" in notice.body
    assert "The last attempt came from Firefox on Linux (203.0.113.5)." in notice.body
    codes = {code_from(m) for m in mail.outbox if m is not notice}
    assert len(codes) >= 2
    html = str(notice.alternatives[0][0])
    for secret in (*codes, WRONG):
        assert secret not in notice.body
        assert secret not in html
        assert secret not in notice.subject


@pytest.mark.django_db
def test_while_locked_issue_and_verify_answer_429_and_nothing_else_is_blocked(
    user: Any, django_capture_on_commit_callbacks: Any, clock: Any
) -> None:
    client = signed_in(user)
    send(client, django_capture_on_commit_callbacks)
    pending = Challenge.objects.get()
    assert guess(client, django_capture_on_commit_callbacks).status_code == 400
    wrong_codes(user, django_capture_on_commit_callbacks, 9)
    assert Lockout.objects.get(user=user).is_active()
    clock.shift(timedelta(seconds=100))
    sent = len(mail.outbox)

    page = send(client, django_capture_on_commit_callbacks)
    assert (page.status_code, page["Retry-After"]) == (429, "800")
    assert "codes by email are paused for this account until 09:15 UTC." in page.content.decode()
    api = client.post("/api/otp/challenges/", {"purpose": "step_up"}, content_type="application/json")
    assert (api.status_code, api["Retry-After"]) == (429, "800")
    assert api.json() == {
        "error": "locked_out",
        "message": "Too many wrong codes: codes by email are paused for this account until 09:15 UTC.",
        "retry_after": 800,
    }
    verify_page = guess(client, django_capture_on_commit_callbacks)
    assert (verify_page.status_code, verify_page["Retry-After"]) == (429, "800")
    verify_api = client.post(
        f"/api/otp/challenges/{pending.pk}/verify/", {"code": WRONG}, content_type="application/json"
    )
    assert (verify_api.status_code, verify_api.json()["error"]) == (429, "locked_out")
    pending.refresh_from_db()
    assert (pending.attempts, pending.status) == (1, "pending")  # no attempt consumed while locked
    assert len(mail.outbox) == sent
    refusals = AuditEvent.objects.filter(event=AuditEventType.RATE_LIMITED, reason="locked_out")
    assert refusals.count() == 2  # the two issue attempts
    assert AuditEvent.objects.filter(event=AuditEventType.VERIFY_FAILED, reason="locked_out").count() == 2
    with pytest.raises(LockedOut) as refused:
        issue_challenge(user=user, purpose="verify_email")
    assert refused.value.retry_after == 800
    # Only the step-up path is locked: the second factor after the password keeps its own count (rule 17).
    assert Lockout.objects.get(user=user).scope == "step_up"
    with django_capture_on_commit_callbacks(execute=True):
        assert issue_challenge(user=user, purpose="login").send_email is True
    sent += 1

    # Only the email-code path: pages and password login work.
    assert client.get("/").status_code == 200
    fresh = Client()
    login = fresh.post("/accounts/login/", {"username": "alice", "password": "correct horse battery staple"})
    assert (login.status_code, login["Location"]) == (302, "/")
    assert fresh.get("/").wsgi_request.user == user

    # It ends by itself.
    clock.shift(timedelta(seconds=800))
    assert send(client, django_capture_on_commit_callbacks).status_code == 302
    assert len(mail.outbox) == sent + 1


@pytest.mark.django_db
@override_settings(EMAIL_OTP_LOCKOUT_THRESHOLD=3, EMAIL_OTP_LOCKOUT_DURATION=900, EMAIL_OTP_LOCKOUT_MAX_DURATION=3000)
def test_each_further_lock_doubles_up_to_the_cap_and_a_right_code_starts_over(
    user: Any, django_capture_on_commit_callbacks: Any, clock: Any
) -> None:
    lengths = []
    for _ in range(4):
        reasons = wrong_codes(user, django_capture_on_commit_callbacks, 3)
        assert reasons == [VerifyReason.INVALID_CODE] * 3
        lockout = Lockout.objects.get(user=user)
        assert lockout.locked_until is not None
        length = (lockout.locked_until - datetime.now(UTC)).total_seconds()
        lengths.append(length)
        clock.shift(timedelta(seconds=length))  # the lock ends at locked_until: never permanent
        assert not lockout.is_active()
    assert lengths == [900, 1800, 3000, 3000]
    assert AuditEvent.objects.filter(event=AuditEventType.LOCKED_OUT).count() == 4

    # Two wrong, then the right code: the run and the doubling start over.
    wrong_codes(user, django_capture_on_commit_callbacks, 2)
    with django_capture_on_commit_callbacks(execute=True):
        challenge = issue_challenge(user=user, purpose="step_up")
    assert verify_challenge(challenge.pk, code_from(mail.outbox[-1])).success
    lockout = Lockout.objects.get(user=user)
    assert (lockout.consecutive_failures, lockout.lock_count) == (0, 0)
    assert wrong_codes(user, django_capture_on_commit_callbacks, 2) == [VerifyReason.INVALID_CODE] * 2
    assert not Lockout.objects.get(user=user).is_active()
    wrong_codes(user, django_capture_on_commit_callbacks, 1)
    lockout.refresh_from_db()
    assert lockout.locked_until == datetime.now(UTC) + timedelta(seconds=900)


@pytest.mark.django_db
def test_the_default_cap_is_a_day(user: Any, django_capture_on_commit_callbacks: Any, clock: Any) -> None:
    Lockout.objects.create(user=user, lock_count=40, consecutive_failures=9)
    wrong_codes(user, django_capture_on_commit_callbacks, 1)
    assert Lockout.objects.get(user=user).locked_until == START + timedelta(days=1)


@pytest.mark.django_db
def test_unlock_command_by_username_and_by_email(
    user: Any, django_capture_on_commit_callbacks: Any, clock: Any, heard: dict[str, list[Any]]
) -> None:
    wrong_codes(user, django_capture_on_commit_callbacks, 10)
    out = StringIO()
    call_command("emailotp_unlock", "alice", "--reason", "called support", stdout=out)
    assert out.getvalue() == (
        "Lifted the step_up lockout of alice; it would have lasted until 2026-03-02 09:15:00 UTC.\n"
    )
    lockout = Lockout.objects.get(user=user)
    assert (lockout.locked_until, lockout.unlocked_at, lockout.unlocked_by) == (START, START, None)
    assert (lockout.consecutive_failures, lockout.lock_count) == (0, 0)
    [event] = AuditEvent.objects.filter(event=AuditEventType.LOCKOUT_LIFTED)
    assert (event.user_id, event.data) == (
        user.pk,
        {"by": "", "by_id": None, "scope": "step_up", "reason": "called support"},
    )
    assert [(c["user"], c["by"], c["request"]) for c in heard["lifted"]] == [(user, None, None)]
    with django_capture_on_commit_callbacks(execute=True):
        issue_challenge(user=user, purpose="step_up")  # usable again at once

    out = StringIO()
    call_command("emailotp_unlock", "alice", stdout=out)
    assert out.getvalue() == "alice is not locked out; nothing to do.\n"

    wrong_codes(user, django_capture_on_commit_callbacks, 10)
    out = StringIO()
    call_command("emailotp_unlock", "ALICE@example.com", stdout=out)
    assert out.getvalue().startswith("Lifted the step_up lockout of alice;")
    assert AuditEvent.objects.filter(event=AuditEventType.LOCKOUT_LIFTED).count() == 2
    assert len(heard["lifted"]) == 2


@pytest.mark.django_db
def test_unlock_command_refuses_unknown_and_ambiguous_users(user: Any) -> None:
    with pytest.raises(CommandError, match=r"No user with the username or email address 'nobody'\.") as unknown:
        call_command("emailotp_unlock", "nobody")
    assert unknown.value.returncode == 1
    UserFactory(username="alice-work", email="shared@example.com")
    UserFactory(username="alice-home", email="shared@example.com")
    with pytest.raises(CommandError, match=r"Several users have the email address 'shared@example\.com'"):
        call_command("emailotp_unlock", "shared@example.com")
    assert not lift_lockout(user)
    assert not AuditEvent.objects.filter(event=AuditEventType.LOCKOUT_LIFTED).exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_wrong_codes_lock_exactly_once_with_one_notice(heard: dict[str, list[Any]]) -> None:
    user = UserFactory(username="alice", email="alice@example.com")
    # Three codes of the one step-up path (the second factor at login keeps a count of its own).
    purposes = ("step_up", "danger_zone", "verify_email")
    challenges = [issue_challenge(user=user, purpose=purpose) for purpose in purposes]
    mail.outbox.clear()
    count = 15  # three challenges of five attempts: room for more than the threshold of ten
    barrier = threading.Barrier(count)
    reasons: list[VerifyReason | None] = []

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            reasons.append(verify_challenge(challenges[index % 3].pk, WRONG).reason)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(reasons) == count
    lockout = Lockout.objects.get(user=user)
    assert (lockout.scope, lockout.lock_count) == ("step_up", 1)
    assert lockout.is_active()
    assert AuditEvent.objects.filter(event=AuditEventType.LOCKED_OUT).count() == 1
    assert len(heard["locked"]) == 1
    assert len(notices()) == 1
    assert reasons.count(VerifyReason.INVALID_CODE) + reasons.count(VerifyReason.BURNED) >= 10


@pytest.mark.django_db
def test_each_path_has_its_own_lock_and_unlocking_lifts_one_path_or_all(
    user: Any, clock: Any, heard: dict[str, list[Any]]
) -> None:
    until = START + timedelta(minutes=15)
    for scope in ("step_up", "login", "sign_in"):
        Lockout.objects.create(user=user, scope=scope, lock_count=1, locked_until=until)
    with pytest.raises(IntegrityError), transaction.atomic():
        Lockout.objects.create(user=user, scope="login")  # one row per user and path

    out = StringIO()
    call_command("emailotp_unlock", "alice", "--scope", "login", stdout=out)
    assert out.getvalue() == "Lifted the login lockout of alice; it would have lasted until 2026-03-02 09:15:00 UTC.\n"
    states = dict(Lockout.objects.filter(user=user).values_list("scope", "locked_until"))
    assert states == {"step_up": until, "login": START, "sign_in": until}
    assert [c["scope"] for c in heard["lifted"]] == ["login"]
    with pytest.raises(LockedOut):
        issue_challenge(user=user, purpose="step_up")

    out = StringIO()
    call_command("emailotp_unlock", "alice", "--scope", "login", stdout=out)
    assert out.getvalue() == "alice is not locked out on the login path; nothing to do.\n"
    assert lift_lockout(user) is True  # every path still locked: step-up and sign-in
    assert [c["scope"] for c in heard["lifted"]] == ["login", "sign_in", "step_up"]
    lifted = AuditEvent.objects.filter(event=AuditEventType.LOCKOUT_LIFTED).order_by("id")
    assert [event.data["scope"] for event in lifted] == ["login", "sign_in", "step_up"]
    assert not Lockout.objects.filter(locked_until__gt=START).exists()
    with pytest.raises(CommandError):
        call_command("emailotp_unlock", "alice", "--scope", "everything")
