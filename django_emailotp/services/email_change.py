"""Email verification and change: a code to an address proves the user controls it; a change then replaces theirs.

Writes ``VerifiedEmail`` rows, the user's email field (for a change), ``Challenge`` rows through ``challenges``
and the ``email_verified`` and ``email_changed`` audit rows; the old address gets a notice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction

from django_emailotp import audit, delivery, purposes, signals
from django_emailotp.adapter import get_adapter
from django_emailotp.crypto import email_pseudonym
from django_emailotp.models import AuditEventType, AuditOutcome, Challenge, VerifiedEmail
from django_emailotp.requestinfo import RequestMeta
from django_emailotp.services import notices
from django_emailotp.services.challenges import issue_challenge
from django_emailotp.services.verification import VerificationResult, verify_challenge


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
