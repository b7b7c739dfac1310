"""Verifying codes: the one place a code is checked and consumed, race-safe (SECURITY.md rule 2).

Writes ``Challenge.status``, ``attempts``, ``consumed_at`` and ``code_hash`` with conditional UPDATEs under a row
lock, and the ``verify_succeeded``, ``verify_failed``, ``challenge_burned`` and ``locked_out`` audit rows. Wrong
codes are counted toward the lockout of the challenge's own path through ``lockouts``; the per-IP failure limit is
taken before the check.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Container
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from django_emailotp import audit, limits, signals
from django_emailotp.conf import app_settings
from django_emailotp.crypto import code_matches, normalize_code
from django_emailotp.models import (
    AuditEvent,
    AuditEventType,
    AuditOutcome,
    Challenge,
    ChallengeStatus,
    Lockout,
    StepUpGrant,
)
from django_emailotp.requestinfo import RequestMeta
from django_emailotp.services import notices
from django_emailotp.services.challenges import retire
from django_emailotp.services.common import as_uuid, purpose_matches, seconds_until
from django_emailotp.services.lockouts import announce_lockout, count_wrong_code, lockout_of, scope_for, with_lockout


class VerifyReason(enum.StrEnum):
    """Why a verification failed. The values are stable: the audit trail and the API use them."""

    INVALID_CODE = "invalid_code"
    EXPIRED = "expired"
    USED = "used"
    BURNED = "burned"
    SUPERSEDED = "superseded"
    WRONG_BINDING = "wrong_binding"
    MALFORMED = "malformed"
    NOT_FOUND = "not_found"
    # Refused before the code was looked at; ``retry_after`` says for how long.
    LOCKED_OUT = "locked_out"
    RATE_LIMITED = "rate_limited"


_REASON_FOR_STATUS = {
    ChallengeStatus.VERIFIED: VerifyReason.USED,
    ChallengeStatus.BURNED: VerifyReason.BURNED,
    ChallengeStatus.SUPERSEDED: VerifyReason.SUPERSEDED,
    ChallengeStatus.EXPIRED: VerifyReason.EXPIRED,
}


@dataclass(frozen=True)
class VerificationResult:
    """``success`` is True only for the one request that consumed the code. ``challenge`` is None for an
    unknown id. ``attempts_remaining`` counts wrong guesses the code still survives."""

    success: bool
    reason: VerifyReason | None = None
    challenge: Challenge | None = None
    attempts_remaining: int = 0
    # Seconds until a locked-out or rate-limited caller may try again.
    retry_after: int | None = None
    # The step-up grant a successful complete_step_up() made.
    grant: StepUpGrant | None = None

    def __bool__(self) -> bool:
        return self.success


def verify_challenge(
    challenge_id: uuid.UUID | str,
    code: object,
    *,
    request: Any | None = None,
    purpose: str | Container[str] | None = None,
    action: str | None = None,
    user: Any | None = None,
) -> VerificationResult:
    """Check ``code`` against the challenge and consume it on success.

    Exactly one of any number of concurrent correct submissions succeeds, and concurrent wrong guesses never
    count beyond ``max_attempts`` (SECURITY.md rule 2): the row is locked for the check, and every update is
    conditional on the challenge still being pending with attempts left. ``purpose`` (a name, or a container of
    names), ``action`` and ``user`` (the owner), when given, must match the challenge. A malformed code or a wrong
    binding costs no attempt.
    """
    meta = RequestMeta.from_request(request)
    ip_key = limits.ip_subject(meta.ip_address)
    # Every failure, malformed input included, counts toward the per-IP limit (SECURITY.md rule 4). It is counted
    # before the code is looked at, so concurrent guesses in any number of processes never get more than the limit
    # checked; a refusal and a success give their count back.
    taken = limits.take(limits.VERIFY_FAILURES_PER_IP, ip_key)
    if taken is not None and taken.exceeded:
        limits.give_back(limits.VERIFY_FAILURES_PER_IP, ip_key)
        return _rate_limited(taken, meta, challenge_id, request)
    pk = as_uuid(challenge_id)
    normalized = normalize_code(code, app_settings.CODE_LENGTH)
    if pk is None:
        result = record_failure(None, VerifyReason.NOT_FOUND, meta)
    elif normalized is None:
        result = record_failure(None, VerifyReason.MALFORMED, meta, challenge_id=pk)
    else:
        with transaction.atomic():
            result = _check(pk, normalized, meta, purpose, action, user)
    if result.success:
        limits.give_back(limits.VERIFY_FAILURES_PER_IP, ip_key)
        signals.challenge_verified.send(sender=Challenge, challenge=result.challenge, request=request)
        return result
    signals.challenge_failed.send(sender=Challenge, challenge=result.challenge, reason=result.reason, request=request)
    challenge = result.challenge
    if challenge is not None and result.reason == VerifyReason.INVALID_CODE and not result.attempts_remaining:
        signals.challenge_burned.send(sender=Challenge, challenge=challenge, request=request)
    if challenge is not None and result.reason == VerifyReason.INVALID_CODE and result.retry_after:
        announce_lockout(challenge, meta, request)
    return result


def _rate_limited(usage: limits.Usage, meta: RequestMeta, challenge_id: object, request: Any) -> VerificationResult:
    audit.record(
        AuditEventType.RATE_LIMITED,
        AuditOutcome.FAILURE,
        reason=usage.name,
        challenge_id=as_uuid(challenge_id),
        meta=meta,
        data={"retry_after": usage.retry_after},
    )
    result = VerificationResult(False, VerifyReason.RATE_LIMITED, None, 0, usage.retry_after)
    signals.challenge_failed.send(sender=Challenge, challenge=None, reason=result.reason, request=request)
    return result


def _check(
    pk: uuid.UUID,
    code: str,
    meta: RequestMeta,
    purpose: str | Container[str] | None,
    action: str | None,
    user: Any | None,
) -> VerificationResult:
    # The lockout row of the challenge's own path comes with it (one statement); only the challenge row is locked.
    challenge = (
        with_lockout(Challenge.objects.select_for_update(of=("self",)).select_related("user")).filter(pk=pk).first()
    )
    if challenge is None:
        return record_failure(None, VerifyReason.NOT_FOUND, meta, challenge_id=pk)
    if (
        (user is not None and challenge.user_id != user.pk)
        or (purpose is not None and not purpose_matches(challenge.purpose, purpose))
        or (action is not None and challenge.action != action)
        or (challenge.binding and challenge.binding not in meta.accepted_bindings)
    ):
        return record_failure(challenge, VerifyReason.WRONG_BINDING, meta)
    now = timezone.now()
    # The lock of this challenge's own path only (SECURITY.md rule 17).
    scope = scope_for(challenge.purpose)
    lockout = lockout_of(challenge)
    if lockout is not None and lockout.is_active(now):
        assert lockout.locked_until is not None
        result = record_failure(challenge, VerifyReason.LOCKED_OUT, meta)
        return replace(result, retry_after=seconds_until(lockout.locked_until, now))
    if challenge.status != ChallengeStatus.PENDING:
        return record_failure(challenge, _REASON_FOR_STATUS[ChallengeStatus(challenge.status)], meta)
    if now >= challenge.expires_at:
        retire(challenge, ChallengeStatus.EXPIRED)
        challenge.status, challenge.code_hash = ChallengeStatus.EXPIRED, ""
        return record_failure(challenge, VerifyReason.EXPIRED, meta)

    pending = Challenge.objects.filter(
        pk=pk, status=ChallengeStatus.PENDING, attempts__lt=F("max_attempts"), expires_at__gt=now
    )
    if code_matches(pk, code, challenge.code_hash):
        if not pending.update(status=ChallengeStatus.VERIFIED, consumed_at=now, code_hash=""):
            # Another request consumed it between our read and our update (databases without row locks).
            return record_failure(challenge, VerifyReason.USED, meta)
        challenge.status, challenge.consumed_at, challenge.code_hash = ChallengeStatus.VERIFIED, now, ""
        if lockout is not None and (lockout.consecutive_failures or lockout.lock_count):
            # The owner proved they read the inbox: the run of wrong codes, and the doubling, start over.
            Lockout.objects.filter(pk=lockout.pk).update(consecutive_failures=0, lock_count=0)
            if lockout.consecutive_failures >= app_settings.NOTIFY_AFTER_FAILURES:
                # Right after a run of wrong ones: tell the owner, in case the wrong ones were someone else's
                # (SECURITY.md rule 13). The count is the one read with the challenge, before the reset.
                notices.notify(
                    challenge.user,
                    notices.SUCCESS_AFTER_FAILURES,
                    {"failures": lockout.consecutive_failures, "device": notices.coarse_device(meta.user_agent)},
                )
        audit.record(AuditEventType.VERIFY_SUCCEEDED, AuditOutcome.SUCCESS, challenge=challenge, meta=meta)
        return VerificationResult(True, None, challenge, 0)

    # The row is locked, so the burning guess is known here; each update still re-checks the count in SQL,
    # which keeps databases without row locks (SQLite) exact too: at most the second update runs in a race.
    last = challenge.max_attempts - 1
    counted = pending.filter(attempts__lt=last).update(attempts=F("attempts") + 1) if challenge.attempts < last else 0
    if not counted:
        counted = pending.filter(attempts=last).update(
            attempts=F("attempts") + 1, status=ChallengeStatus.BURNED, code_hash=""
        )
        challenge.attempts = last
    if not counted:
        challenge.refresh_from_db(fields=["status"])
        return record_failure(
            challenge, _REASON_FOR_STATUS.get(ChallengeStatus(challenge.status), VerifyReason.BURNED), meta
        )
    challenge.attempts += 1
    if challenge.attempts >= challenge.max_attempts:
        challenge.status, challenge.code_hash = ChallengeStatus.BURNED, ""
    locked_until = count_wrong_code(challenge.user_id, scope, now, lockout, first_on_challenge=challenge.attempts == 1)
    result = record_failure(challenge, VerifyReason.INVALID_CODE, meta, locked_until=locked_until)
    return replace(result, retry_after=seconds_until(locked_until, now)) if locked_until else result


def record_failure(
    challenge: Challenge | None,
    reason: VerifyReason,
    meta: RequestMeta,
    *,
    challenge_id: uuid.UUID | None = None,
    locked_until: datetime | None = None,
) -> VerificationResult:
    """Record the failed verification (and the burn or lockout it caused) and describe it."""
    extra: dict[str, Any] = {"challenge_id": challenge_id} if challenge is None else {}
    events = [
        audit.build_event(
            AuditEventType.VERIFY_FAILED,
            AuditOutcome.FAILURE,
            challenge=challenge,
            reason=reason,
            meta=meta,
            **extra,
        )
    ]
    remaining = 0
    if challenge is not None and challenge.status == ChallengeStatus.PENDING:
        remaining = challenge.max_attempts - challenge.attempts
    elif challenge is not None and reason == VerifyReason.INVALID_CODE:
        events.append(
            audit.build_event(AuditEventType.CHALLENGE_BURNED, AuditOutcome.FAILURE, challenge=challenge, meta=meta)
        )
    if challenge is not None and locked_until is not None:
        events.append(
            audit.build_event(
                AuditEventType.LOCKED_OUT,
                AuditOutcome.FAILURE,
                challenge=challenge,
                meta=meta,
                data={"locked_until": locked_until.isoformat()},
            )
        )
    # One INSERT for all rows keeps a burning (or locking) guess as cheap as any other wrong guess.
    AuditEvent.objects.bulk_create(events)
    return VerificationResult(False, reason, challenge, remaining)
