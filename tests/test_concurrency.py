"""Race safety on PostgreSQL (SECURITY.md rule 2): real threads, each on its own database connection, released
together by a barrier against one challenge row."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from django.core import mail
from django.db import connection
from django.test import override_settings

from django_emailotp.exceptions import ResendCooldown
from django_emailotp.models import AuditEvent, AuditEventType, Challenge, ChallengeStatus
from django_emailotp.services import VerificationResult, VerifyReason, issue_challenge, verify_challenge
from tests.conftest import code_from
from tests.factories import UserFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

THREADS = 16
ROUNDS = 20
T = TypeVar("T")


def all_at_once(count: int, task: Callable[[int], T]) -> list[T]:
    """Run ``task(i)`` in ``count`` threads that connect first, then start together; re-raise any error."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            connection.ensure_connection()
            barrier.wait(timeout=30)
            results[index] = task(index)
        except BaseException as exc:
            barrier.abort()
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    if errors:
        raise errors[0]
    return results


def issue_and_read_code(**kwargs: Any) -> tuple[Challenge, str]:
    """Issue with in-process delivery (autocommit: it sends at once) and read the code from the email."""
    outbox_before = len(mail.outbox)
    challenge = issue_challenge(purpose="step_up", **kwargs)
    assert len(mail.outbox) == outbox_before + 1
    return challenge, code_from(mail.outbox[-1])


def audit_events(challenge: Challenge, event: AuditEventType) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(challenge_id=challenge.pk, event=event))


def test_is_postgres(is_postgres: bool) -> None:
    # These tests prove row locking and conditional updates; on SQLite (one writer at a time) they prove nothing.
    assert is_postgres


def test_sixteen_correct_submissions_at_once_give_exactly_one_success() -> None:
    for round_number in range(ROUNDS):
        challenge, code = issue_and_read_code(user=UserFactory(username=f"racer{round_number}"))

        results = all_at_once(
            THREADS, lambda _index, challenge=challenge, code=code: verify_challenge(challenge.pk, code)
        )

        assert sum(result.success for result in results) == 1, f"round {round_number}"
        assert Counter(result.reason for result in results) == {None: 1, VerifyReason.USED: THREADS - 1}
        row = Challenge.objects.get(pk=challenge.pk)
        assert row.status == ChallengeStatus.VERIFIED
        assert row.consumed_at is not None
        assert row.code_hash == ""
        assert row.attempts == 0
        assert len(audit_events(challenge, AuditEventType.VERIFY_SUCCEEDED)) == 1
        failed = audit_events(challenge, AuditEventType.VERIFY_FAILED)
        assert [event.reason for event in failed] == [VerifyReason.USED] * (THREADS - 1)


def test_sixteen_wrong_guesses_at_once_never_count_beyond_the_attempt_limit(user: Any) -> None:
    challenge, code = issue_and_read_code(user=user)
    wrong = [f"{(int(code) + offset) % 10**6:06d}" for offset in range(1, THREADS + 1)]

    results: list[VerificationResult] = all_at_once(THREADS, lambda index: verify_challenge(challenge.pk, wrong[index]))

    assert not any(result.success for result in results)
    assert Counter(result.reason for result in results) == {VerifyReason.INVALID_CODE: 5, VerifyReason.BURNED: 11}
    counted = [result.attempts_remaining for result in results if result.reason == VerifyReason.INVALID_CODE]
    assert sorted(counted) == [0, 1, 2, 3, 4]
    row = Challenge.objects.get(pk=challenge.pk)
    assert row.max_attempts == 5
    assert row.attempts == 5
    assert row.status == ChallengeStatus.BURNED
    assert row.code_hash == ""
    assert len(audit_events(challenge, AuditEventType.CHALLENGE_BURNED)) == 1
    assert len(audit_events(challenge, AuditEventType.VERIFY_FAILED)) == THREADS
    # Burned means burned: the right code is refused afterwards.
    assert verify_challenge(challenge.pk, code).reason == VerifyReason.BURNED


def issue_or_refusal(user: Any) -> Challenge | ResendCooldown:
    try:
        return issue_challenge(user=user, purpose="step_up")
    except ResendCooldown as exc:
        return exc


def test_two_issues_at_once_leave_one_live_challenge_and_the_loser_meets_the_cooldown() -> None:
    for round_number in range(10):
        user = UserFactory(username=f"issuer{round_number}")

        results = all_at_once(2, lambda _index, user=user: issue_or_refusal(user))

        issued = [result for result in results if isinstance(result, Challenge)]
        refused = [result for result in results if isinstance(result, ResendCooldown)]
        assert len(issued) == 1, f"round {round_number}: {results}"
        assert len(refused) == 1
        live = Challenge.objects.filter(user=user, purpose="step_up", status=ChallengeStatus.PENDING)
        assert [challenge.pk for challenge in live] == [issued[0].pk]
        assert Challenge.objects.filter(user=user).count() == 1
        assert AuditEvent.objects.filter(user=user, event=AuditEventType.CHALLENGE_ISSUED).count() == 1
        assert AuditEvent.objects.filter(user=user, event=AuditEventType.RESEND_THROTTLED).count() == 1


@override_settings(EMAIL_OTP_RESEND_COOLDOWN=0)
def test_two_issues_at_once_without_cooldown_supersede_so_one_live_challenge_remains() -> None:
    for round_number in range(10):
        user = UserFactory(username=f"reissuer{round_number}")

        results = all_at_once(2, lambda _index, user=user: issue_challenge(user=user, purpose="step_up"))

        assert all(isinstance(result, Challenge) for result in results)
        statuses = Counter(Challenge.objects.filter(user=user).values_list("status", flat=True))
        assert statuses == {ChallengeStatus.PENDING: 1, ChallengeStatus.SUPERSEDED: 1}, f"round {round_number}"
        superseded = Challenge.objects.get(user=user, status=ChallengeStatus.SUPERSEDED)
        assert superseded.code_hash == ""
