"""Lockouts of the email-code path: counting wrong codes across challenges, locking, announcing, lifting.

Writes ``Lockout`` rows (and their audit rows); the lockout notice goes out through ``notices``. Wrong codes are
counted here when ``verification`` finds one; nothing but the email-code path is ever locked.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from django_emailotp import audit, signals
from django_emailotp.conf import app_settings
from django_emailotp.exceptions import LockedOut
from django_emailotp.models import AuditEventType, AuditOutcome, Challenge, Lockout
from django_emailotp.requestinfo import RequestMeta
from django_emailotp.services import notices


def lockout_of(challenge: Challenge) -> Lockout | None:
    if challenge.user_id is None:
        return None
    try:
        return challenge.user.emailotp_lockout  # type: ignore[union-attr]
    except Lockout.DoesNotExist:
        return None


def lockout_duration(lock_count: int) -> timedelta:
    """The length of the (lock_count + 1)-th lockout: the base duration doubled per earlier lock, capped."""
    seconds = min(app_settings.LOCKOUT_MAX_DURATION, app_settings.LOCKOUT_DURATION * 2 ** min(lock_count, 32))
    return timedelta(seconds=seconds)


def count_wrong_code(user_id: Any, now: datetime, known: Lockout | None) -> datetime | None:
    """Count a wrong code for the user; return when the lock ends if this one reached the threshold.

    ``known`` is the user's row as read with the challenge (None: there was none). The common case is one
    statement: an INSERT for a user's first wrong code, else a conditional UPDATE. Only the locking wrong code
    reads the row again, under a row lock, so concurrent failures lock exactly once.
    """
    threshold = app_settings.LOCKOUT_THRESHOLD
    if known is None and threshold > 1:
        try:
            with transaction.atomic():
                Lockout.objects.create(user_id=user_id, consecutive_failures=1, last_failure_at=now)
            return None
        except IntegrityError:
            pass  # another request created it a moment ago: count on that row
    counted = Lockout.objects.filter(user_id=user_id, consecutive_failures__lt=threshold - 1).update(
        consecutive_failures=F("consecutive_failures") + 1, last_failure_at=now
    )
    if counted:
        return None
    lockout, created = Lockout.objects.select_for_update().get_or_create(
        user_id=user_id, defaults={"consecutive_failures": 1, "last_failure_at": now}
    )
    failures = lockout.consecutive_failures if created else lockout.consecutive_failures + 1
    if failures < threshold:
        if not created:
            Lockout.objects.filter(pk=lockout.pk).update(consecutive_failures=failures, last_failure_at=now)
        return None
    locked_until = now + lockout_duration(lockout.lock_count)
    Lockout.objects.filter(pk=lockout.pk).update(
        consecutive_failures=0,
        lock_count=F("lock_count") + 1,
        locked_until=locked_until,
        last_failure_at=now,
        unlocked_at=None,
        unlocked_by=None,
    )
    return locked_until


def announce_lockout(challenge: Challenge, meta: RequestMeta, request: Any | None) -> None:
    """Tell the user (by email, no secrets) and the project (signal) that their email-code path is locked."""
    assert challenge.user_id is not None
    lockout = Lockout.objects.select_related("user").get(user_id=challenge.user_id)
    assert lockout.locked_until is not None
    notices.notify(
        lockout.user,
        notices.LOCKED_OUT,
        {
            "locked_until": lockout.locked_until,
            "failures": app_settings.LOCKOUT_THRESHOLD,
            "ip_address": meta.ip_address or "",
            "device": notices.coarse_device(meta.user_agent),
        },
    )
    signals.user_locked_out.send(sender=Lockout, user=lockout.user, locked_until=lockout.locked_until, request=request)


def active_lockout(user: Any) -> Lockout | None:
    """The user's lockout while it is in force, else None."""
    lockout = Lockout.objects.filter(user_id=user.pk, locked_until__gt=timezone.now()).first()
    return lockout


def ensure_not_locked_out(user: Any, *, meta: RequestMeta | None = None, purpose: str = "") -> None:
    """Raise :class:`LockedOut` (and audit the refusal) while the user's email-code path is locked."""
    lockout = active_lockout(user)
    if lockout is None:
        return
    assert lockout.locked_until is not None
    audit.record(
        AuditEventType.RATE_LIMITED,
        AuditOutcome.FAILURE,
        reason="locked_out",
        user_id=user.pk,
        purpose=purpose,
        meta=meta or RequestMeta(),
        data={"locked_until": lockout.locked_until.isoformat()},
    )
    raise LockedOut(lockout.locked_until)


def lift_lockout(user: Any, *, by: Any | None = None, request: Any | None = None, reason: str = "") -> bool:
    """End the user's lockout now (an admin action or ``manage.py emailotp_unlock``). False if none was active.

    The wrong-code count starts over; the doubling does too, since someone vouched for the owner.
    """
    now = timezone.now()
    lifted = Lockout.objects.filter(user_id=user.pk, locked_until__gt=now).update(
        locked_until=now, consecutive_failures=0, lock_count=0, unlocked_at=now, unlocked_by=by
    )
    if not lifted:
        return False
    audit.record(
        AuditEventType.LOCKOUT_LIFTED,
        AuditOutcome.SUCCESS,
        user_id=user.pk,
        meta=RequestMeta.from_request(request),
        data={"by": by.get_username() if by is not None else "", "by_id": by.pk if by is not None else None}
        | ({"reason": reason} if reason else {}),
    )
    signals.lockout_lifted.send(sender=Lockout, user=user, by=by, request=request)
    return True
