"""Lockouts of the email-code paths: counting wrong codes across challenges, per path, locking, announcing, lifting.

Writes ``Lockout`` rows, one per user and path (``LockoutScope``), and their audit rows; the lockout notice goes out
through ``notices``. Wrong codes are counted here when ``verification`` finds one, only toward the path of the
challenge's purpose (:func:`scope_for`); nothing but that email-code path is ever locked.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Case, F, FilteredRelation, Q, QuerySet, Value, When
from django.utils import timezone

from django_emailotp import audit, purposes, signals
from django_emailotp.conf import app_settings
from django_emailotp.crypto import email_pseudonym
from django_emailotp.exceptions import LockedOut
from django_emailotp.models import AuditEventType, AuditOutcome, Challenge, Lockout, LockoutScope
from django_emailotp.requestinfo import RequestMeta
from django_emailotp.services import notices
from django_emailotp.services.common import logger

# The paths of purposes with a path of their own; every other purpose (step-up purposes, email verification and
# change) is the signed-in owner's ``step_up`` path.
_SCOPE_OF_PURPOSE = {purposes.LOGIN: LockoutScope.LOGIN, purposes.SIGN_IN: LockoutScope.SIGN_IN}
_LOCKOUT_FIELDS = ("pk", "consecutive_failures", "lock_count", "locked_until")


def scope_for(purpose: str) -> LockoutScope:
    """The path a purpose's wrong codes count against (SECURITY.md rule 17).

    ``login``: the second factor the right password leads to. ``sign_in``: anonymous, address-based sign-in, which
    anyone who knows the address can reach. Everything else is the signed-in owner's ``step_up`` path.
    """
    return _SCOPE_OF_PURPOSE.get(purpose, LockoutScope.STEP_UP)


def with_lockout(challenges: QuerySet[Challenge]) -> QuerySet[Challenge]:
    """``challenges`` with the lockout row of each one's own path (:func:`scope_for`) read in the same statement.

    A LEFT JOIN on the user's row whose scope a CASE over the challenge's purpose names (one row at most: user and
    scope are unique together); :func:`lockout_of` turns its columns back into a ``Lockout``. A challenge for an
    address without an account runs the same statement, whose join finds nothing: known and unknown addresses do
    the same work.
    """
    scope = Case(
        *(When(purpose=purpose, then=Value(str(path))) for purpose, path in _SCOPE_OF_PURPOSE.items()),
        default=Value(str(LockoutScope.STEP_UP)),
    )
    path = FilteredRelation("user__emailotp_lockouts", condition=Q(user__emailotp_lockouts__scope=scope))
    return challenges.annotate(path_lockout=path).annotate(
        **{f"lockout_{name}": F(f"path_lockout__{name}") for name in _LOCKOUT_FIELDS}
    )


def lockout_of(challenge: Challenge) -> Lockout | None:
    """The lockout row :func:`with_lockout` read with ``challenge``, or None when its path has none yet."""
    values = {name: getattr(challenge, f"lockout_{name}") for name in _LOCKOUT_FIELDS}
    if values["pk"] is None:
        return None
    return Lockout(user_id=challenge.user_id, scope=scope_for(challenge.purpose), **values)  # type: ignore[misc]


def lockout_duration(lock_count: int) -> timedelta:
    """The length of the (lock_count + 1)-th lockout: the base duration doubled per earlier lock, capped."""
    seconds = min(app_settings.LOCKOUT_MAX_DURATION, app_settings.LOCKOUT_DURATION * 2 ** min(lock_count, 32))
    return timedelta(seconds=seconds)


def count_wrong_code(
    user_id: Any, scope: str, now: datetime, known: Lockout | None, *, first_on_challenge: bool = False
) -> datetime | None:
    """Count a wrong code on the user's path; return when the lock ends if this one reached the threshold.

    ``known`` is the row as read with the challenge (None: there was none). The common case is one statement: the
    conditional UPDATE, or an INSERT (in a savepoint) for a path's first wrong code. Only the locking wrong code
    reads the row again, under a row lock, so concurrent failures lock exactly once.

    A challenge without a user (an address without an account) makes the same statements as an account that has
    never had a wrong code on this path (SECURITY.md rule 8): for the challenge's first wrong code, a plain UPDATE
    in a savepoint where the account INSERTs its row; after it, the account's conditional UPDATE. Neither matches
    a row.
    """
    threshold = app_settings.LOCKOUT_THRESHOLD
    if user_id is None:
        nobody = Lockout.objects.filter(user__isnull=True, scope=scope)
        if first_on_challenge and threshold > 1:
            # Where an account INSERTs its row: one plain statement in a savepoint, of about the INSERT's cost.
            with transaction.atomic():
                nobody.update(last_failure_at=now)
        else:
            nobody.filter(consecutive_failures__lt=threshold - 1).update(
                consecutive_failures=F("consecutive_failures") + 1, last_failure_at=now
            )
        return None
    if known is None and threshold > 1:
        try:
            with transaction.atomic():
                Lockout.objects.create(user_id=user_id, scope=scope, consecutive_failures=1, last_failure_at=now)
            return None
        except IntegrityError:
            pass  # another request created it a moment ago: count on that row
    counted = Lockout.objects.filter(user_id=user_id, scope=scope, consecutive_failures__lt=threshold - 1).update(
        consecutive_failures=F("consecutive_failures") + 1, last_failure_at=now
    )
    if counted:
        return None
    lockout, created = Lockout.objects.select_for_update().get_or_create(
        user_id=user_id, scope=scope, defaults={"consecutive_failures": 1, "last_failure_at": now}
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
    """Tell the user (by email, no secrets) and the project (signal) that one of their email-code paths is locked."""
    assert challenge.user_id is not None
    scope = scope_for(challenge.purpose)
    lockout = Lockout.objects.select_related("user").get(user_id=challenge.user_id, scope=scope)
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
    signals.user_locked_out.send(
        sender=Lockout, user=lockout.user, locked_until=lockout.locked_until, request=request, scope=str(scope)
    )


def active_lockout(user: Any, scope: str | None = None) -> Lockout | None:
    """The user's lockout of ``scope`` while it is in force, else None; without ``scope``, the one that ends last."""
    active = Lockout.objects.filter(user_id=user.pk, locked_until__gt=timezone.now())
    if scope is not None:
        active = active.filter(scope=scope)
    return active.order_by("-locked_until").first()


def ensure_not_locked_out(
    user: Any, *, meta: RequestMeta | None = None, purpose: str = "", scope: str | None = None
) -> None:
    """Raise :class:`LockedOut` (and audit the refusal) while the path of ``purpose`` (or ``scope``) is locked.

    Without either, the signed-in step-up path is checked.
    """
    lockout = active_lockout(user, scope or scope_for(purpose or purposes.STEP_UP))
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
        data={"locked_until": lockout.locked_until.isoformat(), "scope": lockout.scope},
    )
    raise LockedOut(lockout.locked_until)


def locked_quietly(user_id: Any, scope: str, *, address: str, purpose: str, meta: RequestMeta) -> bool:
    """Whether the path is locked, for an anonymous, address-based request that must not reveal it.

    Makes the same query whether or not the address has an account (``user_id`` None finds nothing). A lock is
    audited and logged (the address pseudonymised), never raised: the caller answers as if the code were sent.
    """
    lockout = Lockout.objects.filter(user_id=user_id, scope=scope, locked_until__gt=timezone.now()).first()
    if lockout is None:
        return False
    assert lockout.locked_until is not None
    audit.record(
        AuditEventType.RATE_LIMITED,
        AuditOutcome.FAILURE,
        reason="locked_out",
        user_id=user_id,
        purpose=purpose,
        email_pseudonym=email_pseudonym(address),
        meta=meta,
        data={"locked_until": lockout.locked_until.isoformat(), "scope": lockout.scope, "answered_as": "accepted"},
    )
    logger.warning(
        "emailotp: no %s code sent to %s: that path is locked until %s (answered as sent)",
        purpose,
        email_pseudonym(address),
        lockout.locked_until.isoformat(),
    )
    return True


def lift_lockout(
    user: Any, *, scope: str | None = None, by: Any | None = None, request: Any | None = None, reason: str = ""
) -> bool:
    """End the user's lockout of ``scope`` now, or of every path without it (an admin action or
    ``manage.py emailotp_unlock``). False if none was active.

    The wrong-code count starts over; the doubling does too, since someone vouched for the owner. Each lifted path
    has its own audit row and ``lockout_lifted`` signal.
    """
    now = timezone.now()
    active = Lockout.objects.filter(user_id=user.pk, locked_until__gt=now)
    if scope is not None:
        active = active.filter(scope=scope)
    lifted_any = False
    for lockout in active.order_by("scope"):
        lifted = Lockout.objects.filter(pk=lockout.pk, locked_until__gt=now).update(
            locked_until=now, consecutive_failures=0, lock_count=0, unlocked_at=now, unlocked_by=by
        )
        if not lifted:
            continue
        lifted_any = True
        audit.record(
            AuditEventType.LOCKOUT_LIFTED,
            AuditOutcome.SUCCESS,
            user_id=user.pk,
            meta=RequestMeta.from_request(request),
            data={
                "by": by.get_username() if by is not None else "",
                "by_id": by.pk if by is not None else None,
                "scope": lockout.scope,
            }
            | ({"reason": reason} if reason else {}),
        )
        signals.lockout_lifted.send(sender=Lockout, user=user, by=by, request=request, scope=lockout.scope)
    return lifted_any
