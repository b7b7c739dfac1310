"""Retention: ``services.purge`` (``manage.py emailotp_purge``, the ``emailotp.purge`` task) at the exact boundaries.

Defaults (SECURITY.md): a challenge row is deleted more than 24 h after it expires, a pending one past expiry loses
its code hash at once, expired step-up grants and remembered browsers go, audit rows lose IP address and user agent
after 90 days and are deleted after 365. Every run reports exact counts, and a second run changes nothing more.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from functools import partial
from io import StringIO
from typing import Any

import pytest
import time_machine
from django.core.mail import EmailMessage
from django.core.management import call_command
from django.test import override_settings

from django_emailotp.models import AuditEvent, Challenge, StepUpGrant, TrustedDevice
from django_emailotp.services import PurgeReport, purge, verify_challenge
from django_emailotp.tasks import purge_expired_records
from tests.test_issue import T0, Capture, Issue, end_request, issue_and_read, session_request

pytestmark = pytest.mark.django_db

IP = "198.51.100.23"
AGENT = "Mozilla/5.0 (retention test)"
SECOND = timedelta(seconds=1)
DAY = timedelta(days=1)
NOTHING = PurgeReport()


@pytest.fixture
def issue(django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]) -> Issue:
    return partial(issue_and_read, django_capture_on_commit_callbacks, mailoutbox)


def purge_at(moment: Any, **kwargs: Any) -> PurgeReport:
    with time_machine.travel(moment, tick=False):
        return purge(**kwargs)


def statuses() -> dict[Any, tuple[str, bool]]:
    """Each challenge's status and whether it still holds a code hash."""
    return {
        pk: (status, bool(code_hash))
        for pk, status, code_hash in Challenge.objects.values_list("pk", "status", "code_hash")
    }


def audit_meta() -> list[tuple[str, str | None, str]]:
    return list(AuditEvent.objects.order_by("id").values_list("event", "ip_address", "user_agent"))


# ---------------------------------------------------------------------------------------------------------------
# Challenges


def test_challenges_expire_at_expiry_and_are_deleted_after_the_retention(
    user: Any, other_user: Any, issue: Issue
) -> None:
    with time_machine.travel(T0, tick=False):
        verified, code = issue(user=user, purpose="login")
        assert verify_challenge(verified.pk, code)
        pending, _ = issue(user=other_user, purpose="login")
    with time_machine.travel(T0 + timedelta(hours=1), tick=False):
        later, _ = issue(user=user, purpose="step_up")
    expiry = T0 + timedelta(seconds=300)
    assert statuses() == {verified.pk: ("verified", False), pending.pk: ("pending", True), later.pk: ("pending", True)}

    assert purge_at(expiry - SECOND) == NOTHING
    assert statuses()[pending.pk] == ("pending", True)

    # At its expiry the pending code loses its hash (an expired code must not wait for the row's deletion).
    assert purge_at(expiry) == PurgeReport(challenges_expired=1)
    assert statuses() == {verified.pk: ("verified", False), pending.pk: ("expired", False), later.pk: ("pending", True)}
    assert purge_at(expiry) == NOTHING

    # Exactly 24 h after expiry the rows are still kept; one second later they go. "later" expired meanwhile.
    assert purge_at(expiry + DAY) == PurgeReport(challenges_expired=1)
    assert set(statuses()) == {verified.pk, pending.pk, later.pk}
    assert purge_at(expiry + DAY + SECOND) == PurgeReport(challenges_deleted=2)
    assert statuses() == {later.pk: ("expired", False)}
    assert purge_at(expiry + DAY + SECOND) == NOTHING

    # Audit rows outlive their challenges (challenge_id is not a foreign key).
    assert AuditEvent.objects.filter(challenge_id=verified.pk).count() == 3


@override_settings(EMAIL_OTP_CHALLENGE_RETENTION=0)
def test_a_zero_challenge_retention_deletes_rows_right_after_expiry(user: Any, issue: Issue) -> None:
    with time_machine.travel(T0, tick=False):
        challenge, _ = issue(user=user, purpose="login")
    expiry = challenge.expires_at

    assert purge_at(expiry) == PurgeReport(challenges_expired=1)
    assert purge_at(expiry + SECOND) == PurgeReport(challenges_deleted=1)
    assert not Challenge.objects.exists()


# ---------------------------------------------------------------------------------------------------------------
# Step-up grants


def test_expired_step_up_grants_are_deleted(user: Any, other_user: Any) -> None:
    def grant(owner: Any, expires_in: int) -> StepUpGrant:
        return StepUpGrant.objects.create(
            user=owner,
            purpose="step_up",
            binding=f"binding-{owner.pk}",
            auth_hash="auth",
            verified_at=T0,
            expires_at=T0 + timedelta(seconds=expires_in),
        )

    short, long = grant(user, 300), grant(other_user, 3600)

    assert purge_at(T0 + timedelta(seconds=299)) == NOTHING
    assert purge_at(T0 + timedelta(seconds=300)) == PurgeReport(grants_deleted=1)
    assert list(StepUpGrant.objects.values_list("pk", flat=True)) == [long.pk]
    assert purge_at(T0 + timedelta(seconds=300)) == NOTHING
    assert purge_at(T0 + timedelta(hours=1)) == PurgeReport(grants_deleted=1)
    assert not StepUpGrant.objects.filter(pk__in=[short.pk, long.pk]).exists()


# ---------------------------------------------------------------------------------------------------------------
# Audit trail


def test_audit_rows_lose_ip_and_user_agent_after_90_days_and_go_after_365(user: Any, issue: Issue) -> None:
    with time_machine.travel(T0, tick=False):
        request = session_request(ip=IP, agent=AGENT)
        old, code = issue(user=user, purpose="login", request=request)
        session_key = end_request(request)
        assert verify_challenge(old.pk, code, request=session_request(session_key, ip=IP, agent=AGENT))
    with time_machine.travel(T0 + DAY, tick=False):
        issue(user=user, purpose="login", request=session_request(ip=IP, agent=AGENT))
    # T0: issued (client), sent (no client), verified (client); T0 + 1 day: issued, sent.
    assert audit_meta() == [
        ("challenge_issued", IP, AGENT),
        ("challenge_sent", None, ""),
        ("verify_succeeded", IP, AGENT),
        ("challenge_issued", IP, AGENT),
        ("challenge_sent", None, ""),
    ]
    session_hashes = list(AuditEvent.objects.order_by("id").values_list("session_hash", flat=True))

    # Both challenges are long gone by then; this test is about the audit rows.
    assert purge_at(T0 + 90 * DAY) == PurgeReport(challenges_deleted=2)
    assert audit_meta()[0] == ("challenge_issued", IP, AGENT)

    assert purge_at(T0 + 90 * DAY + SECOND) == PurgeReport(audit_events_stripped=2)
    assert audit_meta() == [
        ("challenge_issued", None, ""),
        ("challenge_sent", None, ""),
        ("verify_succeeded", None, ""),
        ("challenge_issued", IP, AGENT),
        ("challenge_sent", None, ""),
    ]
    # Only the client details go: the row, its event, user, challenge and salted session hash stay.
    assert list(AuditEvent.objects.order_by("id").values_list("session_hash", flat=True)) == session_hashes
    assert AuditEvent.objects.filter(challenge_id=old.pk, user_id=user.pk).count() == 3
    assert purge_at(T0 + 90 * DAY + SECOND) == NOTHING
    assert purge_at(T0 + 91 * DAY + SECOND) == PurgeReport(audit_events_stripped=1)

    assert purge_at(T0 + 365 * DAY) == NOTHING
    assert AuditEvent.objects.count() == 5
    assert purge_at(T0 + 365 * DAY + SECOND) == PurgeReport(audit_events_deleted=3)
    assert audit_meta() == [("challenge_issued", None, ""), ("challenge_sent", None, "")]
    assert purge_at(T0 + 365 * DAY + SECOND) == NOTHING
    assert purge_at(T0 + 366 * DAY + SECOND) == PurgeReport(audit_events_deleted=2)
    assert not AuditEvent.objects.exists()


@override_settings(EMAIL_OTP_AUDIT_PII_RETENTION_DAYS=7, EMAIL_OTP_AUDIT_RETENTION_DAYS=30)
def test_the_audit_periods_are_settings(user: Any, issue: Issue) -> None:
    with time_machine.travel(T0, tick=False):
        issue(user=user, purpose="login", request=session_request(ip=IP, agent=AGENT))

    assert purge_at(T0 + 7 * DAY + SECOND) == PurgeReport(challenges_deleted=1, audit_events_stripped=1)
    assert purge_at(T0 + 30 * DAY + SECOND) == PurgeReport(audit_events_deleted=2)


# ---------------------------------------------------------------------------------------------------------------
# Everything at once, the command and the task


@pytest.fixture
def aged_rows(user: Any, other_user: Any, issue: Issue) -> None:
    """A year-old verified login, a stale pending code from yesterday, an expired grant and a live one."""
    with time_machine.travel(T0 - 400 * DAY, tick=False):
        request = session_request(ip=IP, agent=AGENT)
        old, code = issue(user=user, purpose="login", request=request)
        assert verify_challenge(old.pk, code, request=session_request(end_request(request), ip=IP, agent=AGENT))
    with time_machine.travel(T0 - 100 * DAY, tick=False):
        issue(user=other_user, purpose="login", request=session_request(ip=IP, agent=AGENT))
    with time_machine.travel(T0 - timedelta(hours=20), tick=False):
        issue(user=user, purpose="step_up")
    for owner, expires_at in ((user, T0 - DAY), (other_user, T0 + DAY)):
        StepUpGrant.objects.create(
            user=owner,
            purpose="step_up",
            binding="b",
            auth_hash="a",
            verified_at=expires_at - timedelta(minutes=5),
            expires_at=expires_at,
        )


EXPECTED = PurgeReport(
    challenges_expired=1,
    challenges_deleted=2,
    grants_deleted=1,
    audit_events_stripped=1,
    audit_events_deleted=3,
)


@pytest.mark.usefixtures("aged_rows")
def test_dry_run_counts_without_changing_anything() -> None:
    before = (statuses(), audit_meta(), StepUpGrant.objects.count())

    assert purge_at(T0, dry_run=True) == dataclasses.replace(EXPECTED, dry_run=True)

    assert (statuses(), audit_meta(), StepUpGrant.objects.count()) == before
    assert purge_at(T0) == EXPECTED
    assert purge_at(T0, dry_run=True) == PurgeReport(dry_run=True)


@pytest.mark.usefixtures("aged_rows")
def test_the_command_prints_the_report_and_a_second_run_purges_nothing() -> None:
    def run(*args: str) -> str:
        out = StringIO()
        with time_machine.travel(T0, tick=False):
            call_command("emailotp_purge", *args, stdout=out)
        return out.getvalue()

    lines = [
        "  {:>8}  pending challenges expired (code hash wiped)",
        "  {:>8}  challenges deleted",
        "  {:>8}  expired step-up grants deleted",
        "  {:>8}  expired remembered browsers deleted",
        "  {:>8}  security notices never sent deleted",
        "  {:>8}  audit events stripped of IP address and user agent",
        "  {:>8}  audit events deleted",
    ]
    counts = [1, 2, 1, 0, 0, 1, 3]
    dry = run("--dry-run")
    assert dry == "\n".join(["Would purge:", *(line.format(n) for line, n in zip(lines, counts, strict=True))]) + "\n"
    assert run() == dry.replace("Would purge:", "Purged:")
    assert run() == "\n".join(["Purged:", *(line.format(0) for line in lines)]) + "\n"


@pytest.mark.usefixtures("aged_rows")
def test_the_celery_task_purges_and_returns_the_report() -> None:
    with time_machine.travel(T0, tick=False):
        first = purge_expired_records.apply()
        second = purge_expired_records.apply()

    assert purge_expired_records.name == "emailotp.purge"
    assert first.successful()
    assert first.get() == dataclasses.asdict(EXPECTED)
    assert second.get() == dataclasses.asdict(PurgeReport())
    assert Challenge.objects.count() == 1
    assert StepUpGrant.objects.count() == 1
    assert AuditEvent.objects.count() == 4


# ---------------------------------------------------------------------------------------------------------------
# Remembered browsers


def remembered(owner: Any, name: str, expires_at: Any) -> TrustedDevice:
    return TrustedDevice.objects.create(
        user=owner,
        token_hash=f"token-{name}",
        auth_hash="auth",
        label="Firefox on Linux",
        created_at=expires_at - 30 * DAY,
        expires_at=expires_at,
    )


def test_expired_remembered_browsers_are_deleted_at_their_expiry(user: Any, other_user: Any) -> None:
    # A remembered browser skips the second factor only while expires_at > now, so at expires_at it is dead weight.
    short = remembered(user, "short", T0 + DAY)
    long = remembered(other_user, "long", T0 + 30 * DAY)

    assert purge_at(T0 + DAY - SECOND) == NOTHING
    assert purge_at(T0 + DAY - SECOND, dry_run=True) == PurgeReport(dry_run=True)
    assert purge_at(T0 + DAY, dry_run=True) == PurgeReport(trusted_devices_deleted=1, dry_run=True)
    assert set(TrustedDevice.objects.values_list("pk", flat=True)) == {short.pk, long.pk}
    assert purge_at(T0 + DAY) == PurgeReport(trusted_devices_deleted=1)
    assert list(TrustedDevice.objects.values_list("pk", flat=True)) == [long.pk]
    assert purge_at(T0 + DAY) == NOTHING
    assert purge_at(T0 + 30 * DAY - SECOND) == NOTHING
    assert purge_at(T0 + 30 * DAY) == PurgeReport(trusted_devices_deleted=1)
    assert not TrustedDevice.objects.exists()
    assert purge_at(T0 + 30 * DAY) == NOTHING


def test_the_command_reports_expired_remembered_browsers(user: Any, other_user: Any) -> None:
    remembered(user, "expired", T0 - SECOND)
    live = remembered(other_user, "live", T0 + SECOND)

    def run() -> list[str]:
        out = StringIO()
        with time_machine.travel(T0, tick=False):
            call_command("emailotp_purge", stdout=out)
        return [line for line in out.getvalue().splitlines() if "remembered browsers" in line]

    assert run() == ["         1  expired remembered browsers deleted"]
    assert list(TrustedDevice.objects.values_list("pk", flat=True)) == [live.pk]
    assert run() == ["         0  expired remembered browsers deleted"]
