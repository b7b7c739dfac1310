"""Backup codes: making a new set, spending one (race-safe, its own throttle), stepping up with one.

Writes ``BackupCode`` rows (argon2id hashes with a keyed lookup tag; the codes themselves are shown once and
never stored) and the ``backup_codes_generated``, ``backup_code_used`` and ``backup_code_failed`` audit rows.
Backup codes keep working while the email-code path is locked: they are the way back in.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from django_emailotp import audit, limits, purposes
from django_emailotp import backup_codes as backup_code_tools
from django_emailotp.conf import app_settings
from django_emailotp.models import AuditEventType, AuditOutcome, BackupCode
from django_emailotp.requestinfo import RequestMeta
from django_emailotp.services import notices
from django_emailotp.services.grants import grant_step_up


class BackupCodeReason(enum.StrEnum):
    """Why a backup code was refused."""

    INVALID = "invalid"
    MALFORMED = "malformed"
    RATE_LIMITED = "rate_limited"


@dataclass(frozen=True)
class BackupCodeResult:
    success: bool
    reason: BackupCodeReason | None = None
    remaining: int = 0
    retry_after: int | None = None

    def __bool__(self) -> bool:
        return self.success


def backup_codes_remaining(user: Any) -> int:
    return BackupCode.objects.filter(user_id=user.pk, used_at__isnull=True).count()


def regenerate_backup_codes(user: Any, *, request: Any | None = None) -> list[str]:
    """Replace every backup code of the user with a new set; return the codes, which are never seen again.

    Callers require a fresh step-up first. The user is emailed that codes were regenerated.
    """
    codes = backup_code_tools.generate(app_settings.BACKUP_CODE_COUNT, app_settings.BACKUP_CODE_LENGTH)
    rows = [
        BackupCode(
            user_id=user.pk, lookup=backup_code_tools.lookup_tag(code), code_hash=backup_code_tools.make_hash(code)
        )
        for code in codes
    ]
    meta = RequestMeta.from_request(request)
    with transaction.atomic():
        revoked, _ = BackupCode.objects.filter(user_id=user.pk).delete()
        BackupCode.objects.bulk_create(rows)
        audit.record(
            AuditEventType.BACKUP_CODES_GENERATED,
            AuditOutcome.SUCCESS,
            user_id=user.pk,
            meta=meta,
            data={"count": len(rows), "revoked": revoked},
        )
        notices.notify(
            user,
            notices.BACKUP_CODES_REGENERATED,
            {"count": len(rows), "device": notices.coarse_device(meta.user_agent)},
        )
    return [backup_code_tools.display(code) for code in codes]


def use_backup_code(user: Any, raw: object, *, request: Any | None = None, purpose: str = "") -> BackupCodeResult:
    """Spend one of the user's backup codes: exactly one of concurrent uses of the same code succeeds.

    Works while the email-code path is locked out (it is the way back in); has its own per-user throttle.
    Costs one argon2id verify whether or not the code exists, so timing reveals nothing.
    """
    meta = RequestMeta.from_request(request)
    subject = limits.subject_of(user.pk)
    throttled = limits.peek(limits.BACKUP_CODE_FAILURES_PER_USER, subject)
    if throttled is not None and throttled.count >= throttled.limit:
        audit.record(
            AuditEventType.RATE_LIMITED,
            AuditOutcome.FAILURE,
            reason=throttled.name,
            user_id=user.pk,
            purpose=purpose,
            meta=meta,
            data={"retry_after": throttled.retry_after},
        )
        return BackupCodeResult(False, BackupCodeReason.RATE_LIMITED, 0, throttled.retry_after)
    code = backup_code_tools.normalize(raw, app_settings.BACKUP_CODE_LENGTH)
    used = False
    if code is not None:
        candidates = list(
            BackupCode.objects.filter(
                user_id=user.pk, lookup=backup_code_tools.lookup_tag(code), used_at__isnull=True
            ).only("pk", "code_hash")
        )
        if not candidates:
            backup_code_tools.spend_equal_time(code)
        for candidate in candidates:
            if backup_code_tools.matches(candidate.code_hash, code):
                used = bool(
                    BackupCode.objects.filter(pk=candidate.pk, used_at__isnull=True).update(used_at=timezone.now())
                )
                break
    if not used:
        limits.hit([(limits.BACKUP_CODE_FAILURES_PER_USER, subject)])
        reason = BackupCodeReason.MALFORMED if code is None else BackupCodeReason.INVALID
        audit.record(
            AuditEventType.BACKUP_CODE_FAILED,
            AuditOutcome.FAILURE,
            reason=reason,
            user_id=user.pk,
            purpose=purpose,
            meta=meta,
        )
        return BackupCodeResult(False, reason, backup_codes_remaining(user))
    remaining = backup_codes_remaining(user)
    audit.record(
        AuditEventType.BACKUP_CODE_USED,
        AuditOutcome.SUCCESS,
        user_id=user.pk,
        purpose=purpose,
        meta=meta,
        data={"remaining": remaining},
    )
    notices.notify(
        user, notices.BACKUP_CODE_USED, {"remaining": remaining, "device": notices.coarse_device(meta.user_agent)}
    )
    return BackupCodeResult(True, None, remaining)


def complete_step_up_with_backup_code(request: Any, raw: object, *, purpose: str) -> BackupCodeResult:
    """Step up with a backup code instead of an emailed one (email down, or the email-code path locked)."""
    user = request.user
    if not user.is_authenticated or not purposes.is_step_up_purpose(purpose):
        return BackupCodeResult(False, BackupCodeReason.INVALID, 0)
    result = use_backup_code(user, raw, request=request, purpose=purpose)
    if result.success:
        grant_step_up(request=request, user=user, purpose=purpose, method="backup_code")
    return result
