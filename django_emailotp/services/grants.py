"""Step-up grants: what a verified step-up code (or a backup code) lets this session or credential do, for how long.

Writes ``StepUpGrant`` rows (one per user, purpose and binding; sliding renewal, single use, revocation) and the
``step_up_granted``, ``step_up_used``, ``step_up_required`` and ``step_up_revoked`` audit rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Container
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from django_emailotp import audit, purposes, signals
from django_emailotp.conf import app_settings
from django_emailotp.crypto import binding_hash
from django_emailotp.exceptions import ActionNotDescribed
from django_emailotp.models import AuditEventType, AuditOutcome, Challenge, StepUpGrant
from django_emailotp.requestinfo import RequestMeta
from django_emailotp.services.common import auth_hash
from django_emailotp.services.verification import VerificationResult, verify_challenge


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
                    auth_hash=auth_hash(user),
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
    if grant is None or not constant_time_compare(grant.auth_hash, auth_hash(user)):
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
