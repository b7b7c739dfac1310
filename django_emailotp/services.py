"""The domain: issue, deliver and verify one-time codes. Plain functions: no HTTP, no Celery.

Views, API views, middleware, admin actions, commands and tasks translate between their world and these
functions; the rules live here.
"""

from __future__ import annotations

import enum
import logging
import math
import re
import secrets
import threading
import uuid
from collections.abc import Callable, Container
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings as django_settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import IntegrityError, connections, transaction
from django.db.models import F
from django.utils import timezone, translation
from django.utils.crypto import constant_time_compare

from django_emailotp import audit, delivery, limits, notices, purposes, signals
from django_emailotp import backup_codes as backup_code_tools
from django_emailotp.adapter import get_adapter
from django_emailotp.conf import (
    DELIVERY_SYNC,
    FALLBACK_SYNC,
    LOGIN_POLICY_OPTIONAL,
    LOGIN_POLICY_REQUIRED,
    LOGIN_POLICY_REQUIRED_STAFF,
    app_settings,
)
from django_emailotp.crypto import (
    binding_hash,
    binding_hashes,
    code_hash,
    code_matches,
    email_pseudonym,
    generate_code,
    normalize_code,
)
from django_emailotp.exceptions import (
    ActionNotDescribed,
    DeliveryError,
    DeliveryUnavailable,
    LockedOut,
    NoEmailAddress,
    RateLimited,
    ResendCooldown,
    SecondFactorNotOptional,
)
from django_emailotp.models import (
    AuditEvent,
    AuditEventType,
    AuditOutcome,
    BackupCode,
    Challenge,
    ChallengeStatus,
    DeliveryStatus,
    Lockout,
    SecondFactor,
    StepUpGrant,
    TrustedDevice,
    VerifiedEmail,
)
from django_emailotp.purposes import validate_purpose
from django_emailotp.requestinfo import RequestMeta

logger = logging.getLogger("django_emailotp")


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


# ---------------------------------------------------------------------------------------------------------------
# Issue


def destination_for(user: AbstractBaseUser | None, email: str | None) -> str:
    """The address a user's codes go to: an explicit ``email`` wins, else the adapter's ``destination_for``."""
    if email is None and user is not None:
        email = get_adapter().destination_for(user)
    if email is None:
        raise NoEmailAddress("issue_challenge() needs a user with an email address, or email=.")
    return delivery.clean_address(email)


# Delivery outcomes that mean the code never reached an inbox, so the resend cooldown does not apply.
UNDELIVERED = frozenset({DeliveryStatus.FAILED, DeliveryStatus.BOUNCED, DeliveryStatus.REJECTED})


def _live_challenge(
    user: AbstractBaseUser | None, email: str, purpose: str, bindings: tuple[str, ...]
) -> Challenge | None:
    live = Challenge.objects.filter(status=ChallengeStatus.PENDING, purpose=purpose, binding__in=bindings)
    live = live.filter(user_id=user.pk) if user is not None else live.filter(user__isnull=True, email=email)
    return live.only("id", "created_at", "expires_at", "user_id", "email", "purpose", "delivery_status").first()


def _retire(challenge: Challenge, status: ChallengeStatus) -> None:
    Challenge.objects.filter(pk=challenge.pk, status=ChallengeStatus.PENDING).update(status=status, code_hash="")


def issue_challenge(
    *,
    user: AbstractBaseUser | None = None,
    email: str | None = None,
    purpose: str,
    request: Any | None = None,
    action: str = "",
    context: dict[str, Any] | None = None,
    send_email: bool = True,
    in_background: bool = False,
) -> Challenge:
    """Create a challenge and hand its email to delivery once the transaction commits.

    ``send_email=False`` does all the same work but sends nothing (sign-in for an unknown address), and
    ``in_background=True`` makes in-process delivery run in a thread, so neither shows in the response time.

    One live challenge exists per (user or address, purpose, binding): a new one supersedes the old, unless the
    old one is younger than ``EMAIL_OTP_RESEND_COOLDOWN`` (then :class:`ResendCooldown` is raised).
    The code is generated by delivery, so it never passes through here, the database or the broker.

    Raises :class:`LockedOut` while the user's email-code path is locked and :class:`RateLimited` past the
    per-IP send limit. Past a per-user or per-address limit it issues as usual but sends nothing (as with
    ``send_email=False``), so the answer reveals nothing; the audit trail records it.
    """
    validate_purpose(purpose)
    address = destination_for(user, email)
    meta = RequestMeta.from_request(request, create_binding=True)
    if user is not None:
        ensure_not_locked_out(user, meta=meta, purpose=purpose)
    # A race between two issues for the same key ends in the partial unique constraint; the loser looks again
    # and sees the winner's challenge (and so, usually, the cooldown).
    for attempt in range(2):
        now = timezone.now()
        live = _live_challenge(user, address, purpose, meta.accepted_bindings)
        # The cooldown protects inboxes; a code whose email is known to have failed never reached one.
        if live is not None and live.expires_at > now and live.delivery_status not in UNDELIVERED:
            wait = app_settings.RESEND_COOLDOWN - (now - live.created_at).total_seconds()
            if wait > 0:
                # Whole seconds until a resend is accepted: 60 right after issuing, not 61.
                retry_after = math.ceil(wait)
                audit.record(
                    AuditEventType.RESEND_THROTTLED,
                    AuditOutcome.FAILURE,
                    challenge=live,
                    meta=meta,
                    data={"retry_after": retry_after},
                )
                raise ResendCooldown(retry_after)
        if attempt == 0:
            exceeded = _count_send(user, address, meta)
            if exceeded is not None:
                # Answered exactly like an accepted send (a real challenge, the same pages and JSON), but no
                # email goes out, so the limit reveals nothing and floods nobody.
                _record_refused_send(exceeded, user, address, purpose, meta)
                send_email = False
        try:
            with transaction.atomic():
                if live is not None:
                    expired = live.expires_at <= now
                    _retire(live, ChallengeStatus.EXPIRED if expired else ChallengeStatus.SUPERSEDED)
                challenge = Challenge.objects.create(
                    user_id=user.pk if user is not None else None,
                    email=address,
                    purpose=purpose,
                    action=action,
                    context=context or {},
                    created_at=now,
                    expires_at=now + timedelta(seconds=app_settings.CODE_TTL),
                    max_attempts=app_settings.MAX_ATTEMPTS,
                    binding=meta.binding,
                    ip_address=meta.ip_address,
                    user_agent=meta.user_agent,
                    # Marked queued up front when Celery delivers (a failed publish marks it failed), which
                    # saves issuing an UPDATE after commit.
                    delivery_status=DeliveryStatus.QUEUED
                    if app_settings.DELIVERY != DELIVERY_SYNC and send_email
                    else DeliveryStatus.PENDING,
                    send_email=send_email,
                )
                audit.record(
                    AuditEventType.CHALLENGE_ISSUED,
                    AuditOutcome.SUCCESS,
                    challenge=challenge,
                    meta=meta,
                    data={"superseded": str(live.pk)} if live is not None else None,
                )
                # After commit, in this order: receivers hear of the challenge even if its delivery then fails.
                transaction.on_commit(
                    partial(signals.challenge_issued.send, sender=Challenge, challenge=challenge, request=request)
                )
                transaction.on_commit(partial(dispatch_delivery, challenge.pk, in_background=in_background))
        except IntegrityError:
            if attempt:
                raise
            continue
        return challenge
    raise AssertionError("unreachable")  # pragma: no cover


def live_challenge_for(request: Any, challenge_id: object, *, purpose: str) -> Challenge | None:
    """The pending, unexpired challenge with this id if it belongs to the request's user, purpose and binding."""
    pk = _as_uuid(challenge_id)
    user = getattr(request, "user", None)
    if pk is None or user is None or not user.is_authenticated:
        return None
    meta = RequestMeta.from_request(request)
    return Challenge.objects.filter(
        pk=pk,
        user_id=user.pk,
        purpose=purpose,
        status=ChallengeStatus.PENDING,
        expires_at__gt=timezone.now(),
        binding__in=meta.accepted_bindings,
    ).first()


def resend_available_in(challenge: Challenge) -> int:
    """Whole seconds until a new code may replace this one (0: now)."""
    wait = app_settings.RESEND_COOLDOWN - (timezone.now() - challenge.created_at).total_seconds()
    return max(0, math.ceil(wait))


def _count_send(user: AbstractBaseUser | None, address: str, meta: RequestMeta) -> limits.Usage | None:
    """Count a send against every send limit; raise past the per-IP one, return any other that is exceeded."""
    per_ip = limits.hit([(limits.SEND_PER_IP, limits.subject_of(meta.ip_address))])
    if per_ip is not None:
        audit.record(
            AuditEventType.RATE_LIMITED,
            AuditOutcome.FAILURE,
            reason=per_ip.name,
            user_id=user.pk if user is not None else None,
            email_pseudonym=email_pseudonym(address),
            meta=meta,
            data={"retry_after": per_ip.retry_after},
        )
        raise RateLimited(per_ip.retry_after, per_ip.name)
    user_key = limits.subject_of(user.pk if user is not None else None)
    address_key = limits.subject_of(address)
    return limits.hit(
        [
            (limits.SEND_PER_USER, user_key),
            (limits.SEND_PER_USER_DAILY, user_key),
            (limits.SEND_PER_ADDRESS, address_key),
            (limits.SEND_PER_ADDRESS_DAILY, address_key),
        ]
    )


def _record_refused_send(
    exceeded: limits.Usage, user: AbstractBaseUser | None, address: str, purpose: str, meta: RequestMeta
) -> None:
    audit.record(
        AuditEventType.RATE_LIMITED,
        AuditOutcome.FAILURE,
        reason=exceeded.name,
        user_id=user.pk if user is not None else None,
        purpose=purpose,
        email_pseudonym=email_pseudonym(address),
        meta=meta,
        data={"retry_after": exceeded.retry_after, "answered_as": "accepted"},
    )


def resend_challenge(
    challenge_id: uuid.UUID | str,
    *,
    request: Any | None = None,
    purpose: str | Container[str] | None = None,
) -> Challenge:
    """Issue a fresh code for the same user, address, purpose and action; the old one is superseded.

    The old challenge must be this session's (or credential's), the signed-in user's when there is one, and for
    ``purpose`` when given; otherwise :class:`Challenge.DoesNotExist` is raised.
    """
    meta = RequestMeta.from_request(request)
    pk = _as_uuid(challenge_id)
    old = Challenge.objects.select_related("user").filter(pk=pk).first() if pk is not None else None
    user = getattr(request, "user", None)
    if (
        old is None
        or (old.binding and old.binding not in meta.accepted_bindings)
        or (user is not None and user.is_authenticated and old.user_id != user.pk)
        or (purpose is not None and not _purpose_matches(old.purpose, purpose))
    ):
        raise Challenge.DoesNotExist("No such challenge for this session.")
    return issue_challenge(
        user=old.user,
        email=old.email,
        purpose=old.purpose,
        request=request,
        action=old.action,
        context=old.context,
    )


# ---------------------------------------------------------------------------------------------------------------
# Delivery


def dispatch_delivery(challenge_id: uuid.UUID, *, in_background: bool = False) -> None:
    """Queue the email through Celery, or send it now when ``EMAIL_OTP_DELIVERY = "sync"``.

    A broker that cannot be reached is recorded on the challenge and in the audit trail, then raised as
    :class:`DeliveryUnavailable`, unless ``EMAIL_OTP_DELIVERY_FALLBACK = "sync"`` sends in-process instead.
    A failed in-process send raises :class:`DeliveryUnavailable` too, so the caller can tell the user.
    """
    if app_settings.DELIVERY == DELIVERY_SYNC:
        if in_background:
            _send_in_background(challenge_id)
        else:
            _send_now(challenge_id)
        return
    from django_emailotp.tasks import enqueue_delivery

    try:
        enqueue_delivery(challenge_id)
    except DeliveryUnavailable as exc:
        challenge = Challenge.objects.get(pk=challenge_id)
        fallback = app_settings.DELIVERY_FALLBACK == FALLBACK_SYNC
        audit.record(
            AuditEventType.DELIVERY_UNAVAILABLE,
            AuditOutcome.FAILURE,
            challenge=challenge,
            reason="broker_unreachable",
            data={"error": str(exc), "fallback": "sync" if fallback else "none"},
        )
        logger.error("emailotp: broker unreachable for challenge %s: %s", challenge_id, exc)
        if not fallback:
            Challenge.objects.filter(pk=challenge_id).update(delivery_status=DeliveryStatus.FAILED)
            raise
        _send_now(challenge_id)


BACKGROUND_SENDS: list[threading.Thread] = []


def _send_in_background(challenge_id: uuid.UUID) -> None:
    """In-process delivery on a thread of its own: failures are recorded by deliver_challenge, never raised."""
    # The active language is per thread: carry the request's over, so the email speaks the page's language.
    language = translation.get_language()

    def run() -> None:
        try:
            with translation.override(language):
                deliver_challenge(challenge_id, final=True)
        except Exception:
            logger.exception("emailotp: background delivery of challenge %s failed", challenge_id)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, name=f"emailotp-send-{challenge_id}", daemon=True)
    # Kept (briefly) so tests and graceful shutdowns can wait for sends in flight.
    BACKGROUND_SENDS[:] = [t for t in BACKGROUND_SENDS if t.is_alive()] + [thread]
    thread.start()


def wait_for_background_sends(timeout: float = 10.0) -> None:
    """Join the in-process sends still running (tests; shutdown hooks)."""
    for thread in list(BACKGROUND_SENDS):
        thread.join(timeout)


def _send_now(challenge_id: uuid.UUID) -> None:
    if deliver_challenge(challenge_id, final=True) == DeliveryStatus.FAILED:
        raise DeliveryUnavailable("The code email could not be sent.")


def deliver_challenge(challenge_id: uuid.UUID | str, *, final: bool = True) -> DeliveryStatus:
    """Generate the code, store only its keyed hash, and send the email.

    Each call generates a new code and overwrites the stored hash before sending, so a retried send never
    leaves two different valid codes. A challenge that is no longer pending is not sent.
    Raises :class:`DeliveryError` for a transient failure that is worth retrying (``final=False``).
    """
    pk = _as_uuid(challenge_id)
    challenge = Challenge.objects.select_related("user").filter(pk=pk).first() if pk is not None else None
    now = timezone.now()
    if challenge is None:
        return DeliveryStatus.SKIPPED
    if challenge.status != ChallengeStatus.PENDING or challenge.expires_at <= now or not challenge.send_email:
        Challenge.objects.filter(pk=challenge.pk).update(delivery_status=DeliveryStatus.SKIPPED)
        return DeliveryStatus.SKIPPED
    code = generate_code(app_settings.CODE_LENGTH)
    stored = Challenge.objects.filter(pk=challenge.pk, status=ChallengeStatus.PENDING).update(
        code_hash=code_hash(challenge.pk, code), delivery_attempts=F("delivery_attempts") + 1
    )
    if not stored:
        return DeliveryStatus.SKIPPED
    message = delivery.build_message(challenge, code)
    del code
    try:
        message.send(fail_silently=False)
    except Exception as exc:
        transient = delivery.is_transient(exc)
        status = DeliveryStatus.FAILED if final or not transient else DeliveryStatus.RETRYING
        Challenge.objects.filter(pk=challenge.pk).update(delivery_status=status)
        audit.record(
            AuditEventType.DELIVERY_RETRY if status == DeliveryStatus.RETRYING else AuditEventType.DELIVERY_FAILED,
            AuditOutcome.FAILURE,
            challenge=challenge,
            reason="transient" if transient else "permanent",
            data={"error": f"{type(exc).__name__}: {exc}"[:500]},
        )
        logger.warning(
            "emailotp: sending challenge %s to %s failed (%s): %s",
            challenge.pk,
            email_pseudonym(challenge.email),
            "transient" if transient else "permanent",
            type(exc).__name__,
        )
        signals.challenge_delivery_failed.send(
            sender=Challenge,
            challenge=challenge,
            error=type(exc).__name__,
            transient=transient,
            final=status == DeliveryStatus.FAILED,
        )
        if status == DeliveryStatus.RETRYING:
            raise DeliveryError(str(exc), transient=True) from exc
        return status
    message_id = delivery.sent_message_id(message)
    Challenge.objects.filter(pk=challenge.pk).update(
        delivery_status=DeliveryStatus.SENT, sent_at=timezone.now(), esp_message_id=message_id
    )
    audit.record(
        AuditEventType.CHALLENGE_SENT,
        AuditOutcome.SUCCESS,
        challenge=challenge,
        data={"esp_message_id": message_id} if message_id else None,
    )
    signals.challenge_sent.send(sender=Challenge, challenge=challenge, message_id=message_id)
    return DeliveryStatus.SENT


# ---------------------------------------------------------------------------------------------------------------
# Verify


def _as_uuid(value: object) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        return None


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
    ip_key = limits.subject_of(meta.ip_address)
    # Every failure, malformed input included, counts toward the per-IP limit (SECURITY.md rule 4). It is counted
    # before the code is looked at, so concurrent guesses in any number of processes never get more than the limit
    # checked; a refusal and a success give their count back.
    taken = limits.take(limits.VERIFY_FAILURES_PER_IP, ip_key)
    if taken is not None and taken.exceeded:
        limits.give_back(limits.VERIFY_FAILURES_PER_IP, ip_key)
        return _rate_limited(taken, meta, challenge_id, request)
    pk = _as_uuid(challenge_id)
    normalized = normalize_code(code, app_settings.CODE_LENGTH)
    if pk is None:
        result = _failure(None, VerifyReason.NOT_FOUND, meta)
    elif normalized is None:
        result = _failure(None, VerifyReason.MALFORMED, meta, challenge_id=pk)
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
        _announce_lockout(challenge, meta, request)
    return result


def _rate_limited(usage: limits.Usage, meta: RequestMeta, challenge_id: object, request: Any) -> VerificationResult:
    audit.record(
        AuditEventType.RATE_LIMITED,
        AuditOutcome.FAILURE,
        reason=usage.name,
        challenge_id=_as_uuid(challenge_id),
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
    # The user's lockout row comes with the challenge (one statement); only the challenge row is locked.
    challenge = (
        Challenge.objects.select_for_update(of=("self",)).select_related("user__emailotp_lockout").filter(pk=pk).first()
    )
    if challenge is None:
        return _failure(None, VerifyReason.NOT_FOUND, meta, challenge_id=pk)
    if (
        (user is not None and challenge.user_id != user.pk)
        or (purpose is not None and not _purpose_matches(challenge.purpose, purpose))
        or (action is not None and challenge.action != action)
        or (challenge.binding and challenge.binding not in meta.accepted_bindings)
    ):
        return _failure(challenge, VerifyReason.WRONG_BINDING, meta)
    now = timezone.now()
    lockout = _lockout_of(challenge)
    if lockout is not None and lockout.is_active(now):
        assert lockout.locked_until is not None
        result = _failure(challenge, VerifyReason.LOCKED_OUT, meta)
        return replace(result, retry_after=_seconds_until(lockout.locked_until, now))
    if challenge.status != ChallengeStatus.PENDING:
        return _failure(challenge, _REASON_FOR_STATUS[ChallengeStatus(challenge.status)], meta)
    if now >= challenge.expires_at:
        _retire(challenge, ChallengeStatus.EXPIRED)
        challenge.status, challenge.code_hash = ChallengeStatus.EXPIRED, ""
        return _failure(challenge, VerifyReason.EXPIRED, meta)

    pending = Challenge.objects.filter(
        pk=pk, status=ChallengeStatus.PENDING, attempts__lt=F("max_attempts"), expires_at__gt=now
    )
    if code_matches(pk, code, challenge.code_hash):
        if not pending.update(status=ChallengeStatus.VERIFIED, consumed_at=now, code_hash=""):
            # Another request consumed it between our read and our update (databases without row locks).
            return _failure(challenge, VerifyReason.USED, meta)
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
        return _failure(challenge, _REASON_FOR_STATUS.get(ChallengeStatus(challenge.status), VerifyReason.BURNED), meta)
    challenge.attempts += 1
    if challenge.attempts >= challenge.max_attempts:
        challenge.status, challenge.code_hash = ChallengeStatus.BURNED, ""
    locked_until = _count_wrong_code(challenge.user_id, now, lockout) if challenge.user_id is not None else None
    result = _failure(challenge, VerifyReason.INVALID_CODE, meta, locked_until=locked_until)
    return replace(result, retry_after=_seconds_until(locked_until, now)) if locked_until else result


def _purpose_matches(actual: str, expected: str | Container[str]) -> bool:
    return actual == expected if isinstance(expected, str) else actual in expected


def _failure(
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


# ---------------------------------------------------------------------------------------------------------------
# Step-up grants


@dataclass(frozen=True)
class StepUpRequirement:
    """What a protected view asks for: a grant for ``purpose`` no older than ``max_age`` seconds (``None``: the
    ``EMAIL_OTP_STEP_UP_MAX_AGE`` window), consumed by the one request it allows when ``single_use``."""

    purpose: str = purposes.STEP_UP
    max_age: int | None = None
    single_use: bool = False
    # What the request would do, described from the request itself ("Send 500 EUR to ACME Ltd"): only a grant
    # for a code issued with that exact action passes. None: any plain grant for the purpose.
    action: Callable[[Any], str] | None = None

    @property
    def window(self) -> int:
        return self.max_age if self.max_age is not None else app_settings.STEP_UP_MAX_AGE

    def action_for(self, request: Any) -> str:
        """The bound action text for ``request``, or "" when the requirement has none.

        A describing function that fails on this request (a missing or malformed field) is a 400, not a 500.
        """
        if self.action is None:
            return ""
        try:
            return str(self.action(request))
        except (KeyError, ValueError, TypeError, AttributeError, IndexError) as exc:
            raise ActionNotDescribed("This request lacks what its confirmation must describe.") from exc


def action_digest(action: str) -> str:
    """What a grant keeps of the action its code confirmed: a keyed hash, blank for a plain grant."""
    return binding_hash("action:" + action) if action else ""


def _auth_hash(user: Any) -> str:
    return binding_hash("auth:" + user.get_session_auth_hash())


def grant_step_up(
    challenge: Challenge | None = None,
    *,
    request: Any | None = None,
    user: Any | None = None,
    purpose: str | None = None,
    method: str = "email_code",
) -> StepUpGrant:
    """Record that the user confirmed ``purpose`` in this session (or for this credential).

    From a verified challenge (its user and purpose), or for ``user`` and ``purpose`` confirmed another way
    (``method="backup_code"``). A new grant replaces the previous one for the same user, purpose and binding.
    """
    # A backup code may be the session's first proof, so the session may not have its binding nonce yet.
    meta = RequestMeta.from_request(request, create_binding=True)
    if challenge is not None:
        user, purpose = challenge.user, challenge.purpose
    assert user is not None
    assert purpose is not None
    now = timezone.now()
    with transaction.atomic():
        # One INSERT ... ON CONFLICT DO UPDATE: a new grant replaces the binding's previous one.
        [grant] = StepUpGrant.objects.bulk_create(
            [
                StepUpGrant(
                    user=user,
                    purpose=purpose,
                    binding=meta.binding,
                    auth_hash=_auth_hash(user),
                    challenge_id=challenge.pk if challenge is not None else None,
                    verified_at=now,
                    expires_at=now + timedelta(seconds=app_settings.STEP_UP_MAX_AGE),
                    consumed_at=None,
                    action_digest=action_digest(challenge.action) if challenge is not None else "",
                )
            ],
            update_conflicts=True,
            unique_fields=["user", "purpose", "binding"],
            update_fields=["auth_hash", "challenge_id", "verified_at", "expires_at", "consumed_at", "action_digest"],
        )
        audit.record(
            AuditEventType.STEP_UP_GRANTED,
            AuditOutcome.SUCCESS,
            challenge=challenge,
            meta=meta,
            data={"expires_at": grant.expires_at.isoformat()} | ({} if challenge else {"method": method}),
            **({} if challenge is not None else {"user_id": user.pk, "purpose": purpose}),
        )
    signals.step_up_granted.send(sender=StepUpGrant, user=user, purpose=grant.purpose, grant=grant, request=request)
    return grant


def complete_step_up(
    challenge_id: uuid.UUID | str, code: object, *, request: Any, purpose: str | None = None
) -> VerificationResult:
    """Verify the request's user's step-up code and, when it is right, grant step-up to this session (or credential).

    ``purpose`` None accepts any step-up purpose; codes for login, sign-in or email verification are refused here
    (as a wrong binding, costing no attempt) because those flows have their own services.
    """
    user = request.user if request.user.is_authenticated else None
    expected: str | Container[str] = purposes.STEP_UP_PURPOSES if purpose is None else purpose
    if user is None or (purpose is not None and not purposes.is_step_up_purpose(purpose)):
        expected = ""
    result = verify_challenge(challenge_id, code, request=request, purpose=expected, user=user)
    if result.success and result.challenge is not None:
        return replace(result, grant=grant_step_up(result.challenge, request=request))
    return result


def find_step_up_grant(request: Any, requirement: StepUpRequirement) -> StepUpGrant | None:
    """The grant that satisfies ``requirement`` for this request's user and binding, or None.

    A grant from another session, for another purpose, older than the window, consumed, expired, or made
    before the user's password changed never counts. A requirement with an action takes only a grant whose code
    confirmed the action this request describes; one without takes only a plain grant.
    """
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    meta = RequestMeta.from_request(request)
    if not meta.binding:
        return None
    now = timezone.now()
    grant = StepUpGrant.objects.filter(
        user_id=user.pk,
        purpose=requirement.purpose,
        binding__in=meta.accepted_bindings,
        consumed_at__isnull=True,
        expires_at__gt=now,
        verified_at__gt=now - timedelta(seconds=requirement.window),
    ).first()
    if grant is None or not constant_time_compare(grant.auth_hash, _auth_hash(user)):
        return None
    if not constant_time_compare(grant.action_digest, action_digest(requirement.action_for(request))):
        return None
    return grant


def use_step_up_grant(request: Any, requirement: StepUpRequirement) -> bool:
    """Whether the request may pass a view with ``requirement``; uses up a single-use grant, renews a sliding one.

    Of concurrent requests holding the same single-use grant, exactly one passes.
    """
    grant = find_step_up_grant(request, requirement)
    if grant is None:
        return False
    now = timezone.now()
    if requirement.single_use:
        if not StepUpGrant.objects.filter(pk=grant.pk, consumed_at__isnull=True).update(consumed_at=now):
            return False
        audit.record(
            AuditEventType.STEP_UP_USED,
            AuditOutcome.SUCCESS,
            user_id=grant.user_id,
            purpose=grant.purpose,
            challenge_id=grant.challenge_id,
            meta=RequestMeta.from_request(request),
            data={"path": request.path[:500]},
        )
    elif app_settings.STEP_UP_SLIDING:
        StepUpGrant.objects.filter(pk=grant.pk).update(
            verified_at=now, expires_at=now + timedelta(seconds=app_settings.STEP_UP_MAX_AGE)
        )
    return True


def record_step_up_required(request: Any, requirement: StepUpRequirement) -> None:
    """Audit (and signal) that a request reached a protected view without a fresh grant."""
    user = getattr(request, "user", None)
    user_id = user.pk if user is not None and user.is_authenticated else None
    audit.record(
        AuditEventType.STEP_UP_REQUIRED,
        AuditOutcome.INFO,
        user_id=user_id,
        purpose=requirement.purpose,
        meta=RequestMeta.from_request(request),
        data={"path": request.path[:500], "method": request.method, "max_age": requirement.window},
    )
    signals.step_up_required.send(
        sender=StepUpGrant, user=user, purpose=requirement.purpose, path=request.path, request=request
    )


def revoke_step_up_grants(user: Any, *, request: Any | None = None) -> int:
    """End the user's grants: those of this request's session when ``request`` is given, else all of them."""
    grants = StepUpGrant.objects.filter(user_id=user.pk)
    meta = RequestMeta.from_request(request)
    if request is not None:
        grants = grants.filter(binding__in=meta.accepted_bindings)
    count, _ = grants.delete()
    if count:
        audit.record(
            AuditEventType.STEP_UP_REVOKED, AuditOutcome.INFO, user_id=user.pk, meta=meta, data={"grants": count}
        )
    return count


# ---------------------------------------------------------------------------------------------------------------
# Lockouts


def _lockout_of(challenge: Challenge) -> Lockout | None:
    if challenge.user_id is None:
        return None
    try:
        return challenge.user.emailotp_lockout  # type: ignore[union-attr]
    except Lockout.DoesNotExist:
        return None


def _seconds_until(moment: datetime, now: datetime) -> int:
    return max(1, math.ceil((moment - now).total_seconds()))


def lockout_duration(lock_count: int) -> timedelta:
    """The length of the (lock_count + 1)-th lockout: the base duration doubled per earlier lock, capped."""
    seconds = min(app_settings.LOCKOUT_MAX_DURATION, app_settings.LOCKOUT_DURATION * 2 ** min(lock_count, 32))
    return timedelta(seconds=seconds)


def _count_wrong_code(user_id: Any, now: datetime, known: Lockout | None) -> datetime | None:
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


def _announce_lockout(challenge: Challenge, meta: RequestMeta, request: Any | None) -> None:
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


# ---------------------------------------------------------------------------------------------------------------
# Delivery tracking

# anymail's normalized event types (anymail.signals.EventType) that say where the code email ended up. Others
# (queued, sent, opened, clicked, unsubscribed, autoresponded, unknown, ...) say nothing new and are ignored.
_DELIVERY_STATUS_FOR_EVENT: dict[str, tuple[DeliveryStatus, AuditOutcome]] = {
    "delivered": (DeliveryStatus.DELIVERED, AuditOutcome.SUCCESS),
    "deferred": (DeliveryStatus.DEFERRED, AuditOutcome.INFO),
    "bounced": (DeliveryStatus.BOUNCED, AuditOutcome.FAILURE),
    "rejected": (DeliveryStatus.REJECTED, AuditOutcome.FAILURE),
    "complained": (DeliveryStatus.COMPLAINED, AuditOutcome.FAILURE),
    "failed": (DeliveryStatus.FAILED, AuditOutcome.FAILURE),
}
# What the receiving side finally did with the email; a late "deferred" (webhooks arrive out of order) never
# replaces one of these, and a complaint implies delivery, so a late "delivered" does not replace it either.
FINAL_DELIVERY_STATUSES = frozenset(
    {
        DeliveryStatus.DELIVERED,
        DeliveryStatus.BOUNCED,
        DeliveryStatus.REJECTED,
        DeliveryStatus.COMPLAINED,
        DeliveryStatus.FAILED,
    }
)
MAX_DESCRIPTION_LENGTH = 500


def _challenge_for_esp_message(message_id: str | None, metadata: dict[str, Any] | None) -> Challenge | None:
    if message_id:
        challenge = Challenge.objects.filter(esp_message_id=message_id).first()
        if challenge is not None:
            return challenge
    # delivery.build_message puts the challenge id into the ESP metadata; the webhook brings it back.
    pk = _as_uuid((metadata or {}).get("emailotp_challenge"))
    return Challenge.objects.filter(pk=pk).first() if pk is not None else None


def _without_address(text: str, address: str | None) -> str:
    """ESP descriptions may quote the recipient ("550 5.1.1 <jane@example.com>: ..."); the audit trail must not."""
    if address:
        text = re.sub(re.escape(address), "[recipient]", text, flags=re.IGNORECASE)
    return text[:MAX_DESCRIPTION_LENGTH]


def record_delivery_event(
    *,
    message_id: str | None,
    event_type: str,
    esp_name: str,
    timestamp: datetime | None = None,
    recipient: str | None = None,
    description: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Challenge | None:
    """Record what the ESP reported about a code email (an anymail tracking event) on its challenge.

    The challenge is found by the ESP message id, else by the ``emailotp_challenge`` metadata. Delivered, deferred,
    bounced, rejected, complained and failed update ``Challenge.delivery_status`` (a late "deferred" never replaces
    a final status) and write a ``delivery_status`` audit row; the address is recorded only as its pseudonym.
    Returns the challenge, or None when the message is not one of ours or the event says nothing about delivery.
    """
    mapped = _DELIVERY_STATUS_FOR_EVENT.get(event_type)
    if mapped is None:
        logger.debug("emailotp: ignoring %s %r event for message %r", esp_name, event_type, message_id)
        return None
    challenge = _challenge_for_esp_message(message_id, metadata)
    if challenge is None:
        logger.debug("emailotp: %s %r event for unknown message %r ignored", esp_name, event_type, message_id)
        return None
    status, outcome = mapped
    rows = Challenge.objects.filter(pk=challenge.pk)
    if status == DeliveryStatus.DEFERRED:
        rows = rows.exclude(delivery_status__in=FINAL_DELIVERY_STATUSES)
    elif status == DeliveryStatus.DELIVERED:
        rows = rows.exclude(delivery_status=DeliveryStatus.COMPLAINED)
    # One conditional UPDATE: concurrent webhooks for the same message cannot downgrade each other either.
    applied = bool(rows.update(delivery_status=status))
    challenge.refresh_from_db(fields=["delivery_status"])
    data: dict[str, Any] = {
        "esp": esp_name,
        "event": event_type,
        "description": _without_address(description or "", recipient),
    }
    if timestamp is not None:
        data["esp_timestamp"] = timestamp.isoformat()
    if not applied:
        data["kept_status"] = challenge.delivery_status
    extra = {"email_pseudonym": email_pseudonym(recipient)} if recipient else {}
    audit.record(AuditEventType.DELIVERY_STATUS, outcome, challenge=challenge, reason=status, data=data, **extra)
    signals.challenge_delivery_status.send(
        sender=Challenge, challenge=challenge, status=status, event=event_type, esp_name=esp_name
    )
    return challenge


# ---------------------------------------------------------------------------------------------------------------
# Retention


@dataclass(frozen=True)
class PurgeReport:
    """What one :func:`purge` run did (or, with ``dry_run``, would do). Running it again right after counts zeros."""

    challenges_expired: int = 0
    challenges_deleted: int = 0
    grants_deleted: int = 0
    trusted_devices_deleted: int = 0
    audit_events_stripped: int = 0
    audit_events_deleted: int = 0
    dry_run: bool = False

    @property
    def total(self) -> int:
        return (
            self.challenges_expired
            + self.challenges_deleted
            + self.grants_deleted
            + self.trusted_devices_deleted
            + self.audit_events_stripped
            + self.audit_events_deleted
        )


def purge(now: datetime | None = None, *, dry_run: bool = False) -> PurgeReport:
    """Apply the retention settings (``manage.py emailotp_purge`` and the ``emailotp.purge`` task call this).

    - pending challenges past their expiry: code hash wiped, status ``expired``;
    - challenges more than ``EMAIL_OTP_CHALLENGE_RETENTION`` seconds past their expiry: deleted;
    - step-up grants past their expiry: deleted;
    - remembered browsers (trusted devices) past their expiry: deleted;
    - audit rows older than ``EMAIL_OTP_AUDIT_PII_RETENTION_DAYS``: IP address and user agent removed;
    - audit rows older than ``EMAIL_OTP_AUDIT_RETENTION_DAYS``: deleted.

    Each step only touches rows it has not handled before, so a second run changes nothing more.
    """
    now = now or timezone.now()
    challenge_cutoff = now - timedelta(seconds=app_settings.CHALLENGE_RETENTION)
    old_challenges = Challenge.objects.filter(expires_at__lt=challenge_cutoff)
    stale_pending = Challenge.objects.filter(
        status=ChallengeStatus.PENDING, expires_at__lte=now, expires_at__gte=challenge_cutoff
    )
    expired_grants = StepUpGrant.objects.filter(expires_at__lte=now)
    expired_devices = TrustedDevice.objects.filter(expires_at__lte=now)  # valid only while expires_at > now
    audit_cutoff = now - timedelta(days=app_settings.AUDIT_RETENTION_DAYS)
    pii_cutoff = now - timedelta(days=app_settings.AUDIT_PII_RETENTION_DAYS)
    events = AuditEvent.objects.filter(created_at__gte=audit_cutoff)
    if dry_run:
        return PurgeReport(
            challenges_expired=stale_pending.count(),
            challenges_deleted=old_challenges.count(),
            grants_deleted=expired_grants.count(),
            trusted_devices_deleted=expired_devices.count(),
            audit_events_stripped=events.with_personal_data_before(pii_cutoff).count(),
            audit_events_deleted=AuditEvent.objects.filter(created_at__lt=audit_cutoff).count(),
            dry_run=True,
        )
    with transaction.atomic():
        _deleted, per_model = old_challenges.delete()
        report = PurgeReport(
            challenges_expired=stale_pending.update(status=ChallengeStatus.EXPIRED, code_hash=""),
            challenges_deleted=per_model.get(Challenge._meta.label, 0),
            grants_deleted=expired_grants.delete()[1].get(StepUpGrant._meta.label, 0),
            trusted_devices_deleted=expired_devices.delete()[1].get(TrustedDevice._meta.label, 0),
            audit_events_deleted=AuditEvent.objects.purge_older_than(audit_cutoff),
            audit_events_stripped=events.strip_personal_data_before(pii_cutoff),
        )
    if report.total:
        logger.info("emailotp: purge %s", report)
    return report


# ---------------------------------------------------------------------------------------------------------------
# Backup codes


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


# ---------------------------------------------------------------------------------------------------------------
# Second factor at login

# The password step's result, kept server-side in the session until the code: who, through which backend, which
# challenge, until when. Nothing here makes the session logged in; only complete_login() calls login().
LOGIN_SESSION_KEY = "_emailotp_login"
TRUSTED_DEVICE_SALT = "django_emailotp.trusted_device"


@dataclass(frozen=True)
class PendingLogin:
    """A password accepted in this browser session, waiting for its second factor until ``expires_at``."""

    user: Any
    backend: str
    # The live login challenge; None once it is used up, burned or expired (or when none could be sent).
    challenge: Challenge | None
    expires_at: datetime
    next_url: str = ""
    login_url: str = ""


def second_factor_required(user: Any) -> bool:
    """Whether ``EMAIL_OTP_LOGIN_POLICY`` (and, when it is "optional", the user's own choice) asks for a code."""
    policy = app_settings.LOGIN_POLICY
    if policy == LOGIN_POLICY_REQUIRED:
        return True
    if policy == LOGIN_POLICY_REQUIRED_STAFF:
        return bool(user.is_staff or user.is_superuser)
    if policy == LOGIN_POLICY_OPTIONAL:
        return second_factor_enabled(user)
    return False


def second_factor_choice_allowed() -> bool:
    """Users may turn the second factor on and off themselves only under the "optional" policy."""
    return app_settings.LOGIN_POLICY == LOGIN_POLICY_OPTIONAL


def second_factor_enabled(user: Any) -> bool:
    """The user's own choice (what the "optional" policy follows)."""
    return SecondFactor.objects.filter(user_id=user.pk, enabled=True).exists()


def set_second_factor(user: Any, enabled: bool, *, request: Any | None = None) -> bool:
    """Turn the user's second factor on or off; False when it already was. Callers require a fresh step-up first.

    Audited, and the user is emailed. Turning it off also forgets every remembered browser, so turning it on again
    starts without any. Raises :class:`SecondFactorNotOptional` unless the policy is "optional".
    """
    if not second_factor_choice_allowed():
        raise SecondFactorNotOptional("EMAIL_OTP_LOGIN_POLICY does not let users choose.")
    meta = RequestMeta.from_request(request)
    now = timezone.now()
    with transaction.atomic():
        setting, created = SecondFactor.objects.select_for_update().get_or_create(
            user_id=user.pk, defaults={"enabled": enabled, "changed_at": now}
        )
        if created and not enabled:
            return False
        if not created:
            if setting.enabled == enabled:
                return False
            SecondFactor.objects.filter(pk=setting.pk).update(enabled=enabled, changed_at=now)
        forgotten = 0 if enabled else TrustedDevice.objects.filter(user_id=user.pk).delete()[0]
        audit.record(
            AuditEventType.SECOND_FACTOR_CHANGED,
            AuditOutcome.SUCCESS,
            reason="enabled" if enabled else "disabled",
            user_id=user.pk,
            purpose=purposes.LOGIN,
            meta=meta,
            data={"enabled": enabled, "devices_forgotten": forgotten},
        )
        notices.notify(
            user,
            notices.SECOND_FACTOR_ENABLED if enabled else notices.SECOND_FACTOR_DISABLED,
            {"device": notices.coarse_device(meta.user_agent)},
        )
    return True


def second_factor_needed(request: Any, user: Any) -> bool:
    """Whether this password login must wait for a code: the policy asks for one and the browser is not remembered.

    A remembered browser that satisfies the second factor is audited as a completed login (``trusted_device``).
    """
    if not second_factor_required(user):
        return False
    device = _trusted_device(request, user)
    if device is None:
        return True
    TrustedDevice.objects.filter(pk=device.pk).update(last_used_at=timezone.now())
    audit.record(
        AuditEventType.LOGIN_COMPLETED,
        AuditOutcome.SUCCESS,
        user_id=user.pk,
        purpose=purposes.LOGIN,
        meta=RequestMeta.from_request(request),
        data={"method": "trusted_device", "device": device.pk},
    )
    return False


def _store_pending_login(
    request: Any, user: Any, backend: str, challenge_id: object, expires_at: datetime, next_url: str, login_url: str
) -> None:
    request.session[LOGIN_SESSION_KEY] = {
        "user": user._meta.pk.value_to_string(user),
        "backend": backend,
        "auth": _auth_hash(user),
        "challenge": str(challenge_id) if challenge_id else "",
        "expires": expires_at.timestamp(),
        "next": next_url,
        "login_url": login_url,
    }


def begin_login(request: Any, user: Any, backend: str, *, next_url: str = "", login_url: str = "") -> Challenge:
    """The password was right and a second factor is needed: send a login code bound to this session.

    Django's ``login()`` is NOT called. The pending state (user, backend, challenge, expiry = the challenge's, the
    already validated ``next_url`` and the page to start over from) lives in the session. A resend cooldown reuses
    the live code. :class:`LockedOut`, :class:`RateLimited` and :class:`DeliveryUnavailable` propagate after the
    pending state is saved (for ``EMAIL_OTP_CODE_TTL``), so a backup code can still finish the login.
    """
    meta = RequestMeta.from_request(request, create_binding=True)
    now = timezone.now()
    audit.record(
        AuditEventType.SECOND_FACTOR_REQUIRED,
        AuditOutcome.INFO,
        user_id=user.pk,
        purpose=purposes.LOGIN,
        meta=meta,
        data={"policy": app_settings.LOGIN_POLICY},
    )
    _store_pending_login(
        request, user, backend, None, now + timedelta(seconds=app_settings.CODE_TTL), next_url, login_url
    )
    try:
        challenge = issue_challenge(user=user, purpose=purposes.LOGIN, request=request)
    except ResendCooldown:
        # The password was entered again in the same session: the code already sent still counts.
        live = _live_challenge(user, destination_for(user, None), purposes.LOGIN, meta.accepted_bindings)
        if live is None:  # pragma: no cover - the cooldown is only raised while a live challenge exists
            raise
        challenge = live
    _store_pending_login(request, user, backend, challenge.pk, challenge.expires_at, next_url, login_url)
    return challenge


def pending_login(request: Any) -> PendingLogin | None:
    """This session's login waiting for its second factor, or None (none, expired, user gone or password changed)."""
    session = getattr(request, "session", None)
    state = session.get(LOGIN_SESSION_KEY) if session is not None else None
    if not isinstance(state, dict):
        return None
    from django.contrib.auth import load_backend

    now = timezone.now()
    try:
        expires_at = datetime.fromtimestamp(float(state["expires"]), tz=UTC)
        backend = str(state["backend"])
        if expires_at <= now or backend not in django_settings.AUTHENTICATION_BACKENDS:
            return None
        user = load_backend(backend).get_user(state["user"])
    except (KeyError, TypeError, ValueError, ImportError):
        return None
    if user is None or not constant_time_compare(str(state.get("auth", "")), _auth_hash(user)):
        return None
    challenge = None
    challenge_id = _as_uuid(state.get("challenge"))
    if challenge_id is not None:
        challenge = Challenge.objects.filter(
            pk=challenge_id,
            user_id=user.pk,
            purpose=purposes.LOGIN,
            status=ChallengeStatus.PENDING,
            expires_at__gt=now,
            binding__in=RequestMeta.from_request(request).accepted_bindings,
        ).first()
    return PendingLogin(
        user=user,
        backend=backend,
        challenge=challenge,
        expires_at=expires_at,
        next_url=str(state.get("next", "")),
        login_url=str(state.get("login_url", "")),
    )


def cancel_login(request: Any) -> None:
    """Drop this session's pending login (starting over, or after it finished)."""
    session = getattr(request, "session", None)
    if session is not None:
        session.pop(LOGIN_SESSION_KEY, None)


def resend_login_code(request: Any) -> Challenge:
    """A new login code for this session's pending login; the old one is superseded and the expiry moves with it.

    Raises :class:`Challenge.DoesNotExist` without a pending login, and what :func:`issue_challenge` raises.
    """
    pending = pending_login(request)
    if pending is None:
        raise Challenge.DoesNotExist("No login is waiting for a code in this session.")
    challenge = issue_challenge(user=pending.user, purpose=purposes.LOGIN, request=request)
    _store_pending_login(
        request,
        pending.user,
        pending.backend,
        challenge.pk,
        challenge.expires_at,
        pending.next_url,
        pending.login_url,
    )
    return challenge


def _finish_login(request: Any, pending: PendingLogin, method: str, challenge: Challenge | None = None) -> None:
    from django.contrib.auth import login

    cancel_login(request)
    # login() cycles the session key (or flushes a session that belonged to someone else).
    login(request, pending.user, backend=pending.backend)
    audit.record(
        AuditEventType.LOGIN_COMPLETED,
        AuditOutcome.SUCCESS,
        challenge=challenge,
        meta=RequestMeta.from_request(request),
        data={"method": method},
        **({} if challenge is not None else {"user_id": pending.user.pk, "purpose": purposes.LOGIN}),
    )


def complete_login(request: Any, code: object) -> VerificationResult:
    """Check the login code of this session's pending login; when it is right, log the user in with ``login()``.

    Without a pending login (never started, expired, another browser) nothing is verified and the result says
    ``expired`` (the session had one) or ``not_found``.
    """
    pending = pending_login(request)
    if pending is None:
        state = request.session.pop(LOGIN_SESSION_KEY, None) if getattr(request, "session", None) else None
        reason = VerifyReason.EXPIRED if isinstance(state, dict) else VerifyReason.NOT_FOUND
        challenge_id = _as_uuid(state.get("challenge")) if isinstance(state, dict) else None
        return _failure(None, reason, RequestMeta.from_request(request), challenge_id=challenge_id)
    state_challenge = request.session[LOGIN_SESSION_KEY].get("challenge") or ""
    result = verify_challenge(state_challenge, code, request=request, purpose=purposes.LOGIN, user=pending.user)
    if result.success:
        _finish_login(request, pending, "email_code", result.challenge)
    return result


def complete_login_with_backup_code(request: Any, raw: object) -> BackupCodeResult:
    """Finish this session's pending login with a backup code (email down, or the email-code path locked out)."""
    pending = pending_login(request)
    if pending is None:
        return BackupCodeResult(False, BackupCodeReason.INVALID, 0)
    result = use_backup_code(pending.user, raw, request=request, purpose=purposes.LOGIN)
    if result.success:
        _finish_login(request, pending, "backup_code")
    return result


# Remembered browsers ("remember this browser"): the cookie carries a random token, signed; the table keeps only
# a keyed hash of it and of the user's password hash, so a password change revokes every remembered browser.


def _device_token_hashes(token: str) -> tuple[str, ...]:
    return binding_hashes("trusted_device:" + token)


def _device_token(request: Any) -> str | None:
    days = app_settings.TRUSTED_DEVICE_DAYS
    if days <= 0 or request is None:
        return None
    token = request.get_signed_cookie(
        app_settings.TRUSTED_DEVICE_COOKIE, default=None, salt=TRUSTED_DEVICE_SALT, max_age=days * 86400
    )
    return token or None


def _trusted_device(request: Any, user: Any) -> TrustedDevice | None:
    """This browser's remembered-device row for ``user`` if it is valid; one made before a password change is
    deleted (and audited) on sight."""
    token = _device_token(request)
    if token is None:
        return None
    device = TrustedDevice.objects.filter(
        user_id=user.pk, token_hash__in=_device_token_hashes(token), expires_at__gt=timezone.now()
    ).first()
    if device is None:
        return None
    if not constant_time_compare(device.auth_hash, _auth_hash(user)):
        _remove_devices(user, [device.pk], reason="password_changed", request=request)
        return None
    return device


def is_trusted_device(request: Any, user: Any) -> bool:
    """Whether this browser is remembered for ``user``: signed cookie, known token, not expired, password unchanged."""
    return _trusted_device(request, user) is not None


def remember_device(request: Any, user: Any, response: Any) -> TrustedDevice | None:
    """Remember this browser for ``user`` for ``EMAIL_OTP_TRUSTED_DEVICE_DAYS`` (None when that is 0).

    Sets the signed cookie on ``response``: HttpOnly, SameSite=Lax, Secure when the request is.
    """
    days = app_settings.TRUSTED_DEVICE_DAYS
    if days <= 0:
        return None
    token = secrets.token_urlsafe(32)
    meta = RequestMeta.from_request(request)
    now = timezone.now()
    device = TrustedDevice.objects.create(
        user_id=user.pk,
        token_hash=_device_token_hashes(token)[0],
        auth_hash=_auth_hash(user),
        label=notices.coarse_device(meta.user_agent),
        ip_address=meta.ip_address,
        created_at=now,
        expires_at=now + timedelta(days=days),
    )
    audit.record(
        AuditEventType.TRUSTED_DEVICE_ADDED,
        AuditOutcome.SUCCESS,
        user_id=user.pk,
        purpose=purposes.LOGIN,
        meta=meta,
        data={"device": device.pk, "expires_at": device.expires_at.isoformat()},
    )
    response.set_signed_cookie(
        app_settings.TRUSTED_DEVICE_COOKIE,
        token,
        salt=TRUSTED_DEVICE_SALT,
        max_age=days * 86400,
        secure=request.is_secure(),
        httponly=True,
        samesite="Lax",
    )
    return device


def trusted_devices(user: Any, request: Any | None = None) -> list[TrustedDevice]:
    """The user's remembered browsers still in force, newest first; ``is_current`` marks this request's browser."""
    token = _device_token(request)
    current = set(_device_token_hashes(token)) if token else set()
    auth_hash = _auth_hash(user)
    devices = [
        device
        for device in TrustedDevice.objects.filter(user_id=user.pk, expires_at__gt=timezone.now())
        if constant_time_compare(device.auth_hash, auth_hash)
    ]
    for device in devices:
        device.is_current = device.token_hash in current  # type: ignore[attr-defined]
    return devices


def _remove_devices(user: Any, device_ids: list[Any], *, reason: str, request: Any | None) -> int:
    removed, _ = TrustedDevice.objects.filter(user_id=user.pk, pk__in=device_ids).delete()
    if removed:
        audit.record(
            AuditEventType.TRUSTED_DEVICE_REMOVED,
            AuditOutcome.INFO,
            reason=reason,
            user_id=user.pk,
            purpose=purposes.LOGIN,
            meta=RequestMeta.from_request(request),
            data={"devices": [str(pk) for pk in device_ids]},
        )
    return removed


def forget_device(user: Any, device_id: object, *, request: Any | None = None) -> bool:
    """Forget one of the user's remembered browsers (its next login asks for a code again). False if not theirs."""
    try:
        pk = int(str(device_id))
    except ValueError:
        return False
    return bool(_remove_devices(user, [pk], reason="forgotten", request=request))


# ---------------------------------------------------------------------------------------------------------------
# Passwordless sign-in and email verification


@dataclass(frozen=True)
class SignInResult:
    """The code check (``verification``) and, when it succeeded, who is now signed in."""

    verification: VerificationResult
    user: Any | None = None
    account_created: bool = False

    @property
    def success(self) -> bool:
        return self.verification.success

    @property
    def reason(self) -> VerifyReason | None:
        return self.verification.reason

    def __bool__(self) -> bool:
        return self.success


def request_sign_in(email: object, *, request: Any) -> Challenge:
    """Send a sign-in code to the account with this address, behaving the same whether or not there is one.

    A known address gets a code (to the adapter's ``destination_for``). An unknown one gets the same challenge row,
    audit rows and delivery work but no email, unless the adapter's ``can_create_account`` allows a new account.
    A known user whose email-code path is locked out is answered the same way as an unknown address (no email).
    Delivery always runs after the response's work (a thread for in-process delivery, Celery otherwise), so the
    time taken does not tell either. The cooldown, the per-IP limit (:class:`RateLimited`) and the per-address
    limits apply alike to every address. Raises :class:`NoEmailAddress` for input that is not one valid address.
    """
    address = delivery.clean_address(email)
    adapter = get_adapter()
    user = adapter.get_user_by_email(address)
    known_id = user.pk if user is not None else None
    reason = ""
    if user is not None:
        try:
            challenge = issue_challenge(user=user, purpose=purposes.SIGN_IN, request=request, in_background=True)
        except LockedOut:
            # Audited by ensure_not_locked_out; answered exactly like an address without an account.
            user, reason = None, "locked_out"
    else:
        reason = "unknown_address"
    if user is None:
        challenge = issue_challenge(
            email=address,
            purpose=purposes.SIGN_IN,
            request=request,
            send_email=reason == "unknown_address" and adapter.can_create_account(address, request),
            in_background=True,
        )
    saved = not challenge._state.adding
    audit.record(
        AuditEventType.SIGN_IN_REQUESTED,
        AuditOutcome.INFO,
        reason=reason,
        user_id=known_id,
        purpose=purposes.SIGN_IN,
        challenge_id=challenge.pk if saved else None,
        email_pseudonym=email_pseudonym(address),
        meta=RequestMeta.from_request(request),
        data={"email_sent": saved and challenge.send_email and reason != "locked_out"},
    )
    return challenge


def _disguised_for_sign_in(result: VerificationResult) -> VerificationResult:
    """A locked-out account answers a sign-in code like any wrong code: the lock must not reveal the account."""
    challenge = result.challenge
    if result.reason == VerifyReason.LOCKED_OUT:
        remaining = challenge.max_attempts - challenge.attempts if challenge is not None else 0
        return replace(result, reason=VerifyReason.INVALID_CODE, attempts_remaining=remaining, retry_after=None)
    if result.reason == VerifyReason.INVALID_CODE and result.retry_after:
        return replace(result, retry_after=None)
    return result


def _login_backend(user: Any) -> str:
    backend = getattr(user, "backend", None)
    return backend if isinstance(backend, str) else django_settings.AUTHENTICATION_BACKENDS[0]


def complete_sign_in(request: Any, challenge_id: object, code: object) -> SignInResult:
    """Check a sign-in code; when it is right, log the request's session in with Django's ``login()``.

    Only a challenge issued for ``sign_in`` to this session (or credential) counts. The account is the challenge's
    user; for an address that had none, the one that has it now, else a new one if the adapter allows it.
    ``login()`` runs only here, after the code succeeded (it cycles the session key). A lockout answers like a
    wrong code (see :func:`request_sign_in`). ``request`` may be a DRF request; its Django request is logged in.
    """
    result = _disguised_for_sign_in(
        verify_challenge(challenge_id, code, request=request, purpose=purposes.SIGN_IN)  # type: ignore[arg-type]
    )
    if not result.success:
        return SignInResult(result)
    challenge = result.challenge
    assert challenge is not None
    adapter = get_adapter()
    user: Any = challenge.user
    created = False
    if user is None:
        user = adapter.get_user_by_email(challenge.email)
        if user is None and adapter.can_create_account(challenge.email, request):
            user, created = adapter.create_account(challenge.email, request), True
    meta = RequestMeta.from_request(request)
    if user is None or not user.is_active:
        audit.record(
            AuditEventType.SIGN_IN_COMPLETED, AuditOutcome.FAILURE, reason="no_account", challenge=challenge, meta=meta
        )
        return SignInResult(replace(result, success=False, reason=VerifyReason.INVALID_CODE))
    from django.contrib.auth import login

    login(getattr(request, "_request", request), user, backend=_login_backend(user))
    audit.record(
        AuditEventType.SIGN_IN_COMPLETED,
        AuditOutcome.SUCCESS,
        challenge=challenge,
        user_id=user.pk,
        meta=RequestMeta.from_request(request),
        data={"account_created": created},
    )
    return SignInResult(result, user, created)


@dataclass(frozen=True)
class EmailConfirmation:
    """The code check and what it confirmed: ``email`` verified and, for a change, the ``previous_email``.

    ``in_use`` is set when the code was right but another account has taken the address meanwhile (nothing changed).
    """

    verification: VerificationResult
    email: str = ""
    previous_email: str | None = None
    in_use: bool = False

    @property
    def success(self) -> bool:
        return self.verification.success and not self.in_use

    @property
    def changed(self) -> bool:
        return self.success and self.previous_email is not None

    def __bool__(self) -> bool:
        return self.success


def request_email_verification(user: Any, address: object, *, request: Any, change: bool = False) -> Challenge:
    """Send a code to ``address`` that proves the user controls it; with ``change`` confirming it replaces theirs.

    The code is bound to that exact address (the challenge's action), so it cannot confirm another one; asking for
    another address supersedes it. Callers require a fresh step-up before a change. The answer is the same whether
    or not another account uses the address (that is checked only once the code proves ownership).
    """
    cleaned = delivery.clean_address(address)
    return issue_challenge(
        user=user,
        email=cleaned,
        purpose=purposes.VERIFY_EMAIL,
        request=request,
        action=cleaned,
        context={"change": True} if change else None,
        in_background=True,
    )


def latest_email_verification(request: Any) -> Challenge | None:
    """The request's user's newest email-verification challenge issued to this session (or credential), if any.

    Whatever its state: verifying it then says why it no longer works (expired, used, superseded, ...).
    """
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    return (
        Challenge.objects.filter(
            user_id=user.pk,
            purpose=purposes.VERIFY_EMAIL,
            binding__in=RequestMeta.from_request(request).accepted_bindings,
        )
        .order_by("-created_at")
        .only("id")
        .first()
    )


def confirm_email(request: Any, challenge_id: object, code: object, *, email: str | None = None) -> EmailConfirmation:
    """Check the request's user's email-verification code; when right, record the address as verified.

    ``email``, when given, must be the address the code was sent to (a code for one address cannot confirm
    another). For a change the user's email field is set, the old address gets a notice (no code in it) and the
    ``email_verified`` signal carries ``previous_email``.
    """
    user = request.user if request.user.is_authenticated else None
    result = verify_challenge(
        challenge_id,  # type: ignore[arg-type]
        code,
        request=request,
        purpose=purposes.VERIFY_EMAIL if user is not None else "",
        user=user,
        action=email,
    )
    if not result.success:
        return EmailConfirmation(result)
    challenge = result.challenge
    assert challenge is not None
    assert user is not None
    address = challenge.action
    meta = RequestMeta.from_request(request)
    change = bool(challenge.context.get("change"))
    if change:
        owner = get_adapter().get_user_by_email(address)
        if owner is not None and owner.pk != user.pk:
            audit.record(
                AuditEventType.EMAIL_CHANGED,
                AuditOutcome.FAILURE,
                reason="address_in_use",
                challenge=challenge,
                meta=meta,
            )
            return EmailConfirmation(result, address, in_use=True)
    previous: str | None = None
    field = user.get_email_field_name()
    with transaction.atomic():
        VerifiedEmail.objects.get_or_create(user=user, email=address)
        audit.record(AuditEventType.EMAIL_VERIFIED, AuditOutcome.SUCCESS, challenge=challenge, meta=meta)
        if change:
            previous = getattr(user, field, "") or ""
            setattr(user, field, address)
            user.save(update_fields=[field])
            audit.record(
                AuditEventType.EMAIL_CHANGED,
                AuditOutcome.SUCCESS,
                challenge=challenge,
                meta=meta,
                data={"previous": email_pseudonym(previous)} if previous else None,
            )
            if previous and previous.lower() != address.lower():
                notices.notify(
                    user,
                    notices.EMAIL_CHANGED,
                    {"new_email": delivery.mask_address(address), "device": notices.coarse_device(meta.user_agent)},
                    to=previous,
                )
    signals.email_verified.send(
        sender=VerifiedEmail, user=user, email=address, previous_email=previous, request=request
    )
    return EmailConfirmation(result, address, previous)


def email_verified(user: Any, address: str | None = None) -> bool:
    """Whether the user proved control of ``address`` (default: their current address) with a code."""
    address = address if address is not None else get_adapter().destination_for(user)
    return bool(address) and VerifiedEmail.objects.filter(user_id=user.pk, email__iexact=address).exists()
