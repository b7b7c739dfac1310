"""Passwordless sign-in: a code to an address, answered alike whether or not it has an account, then ``login()``.

Writes ``Challenge`` rows through ``challenges`` (a real row that sends nothing for an unknown address) and the
``sign_in_requested`` and ``sign_in_completed`` audit rows; may create an account through the adapter.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from django.conf import settings as django_settings

from django_emailotp import audit, delivery, purposes
from django_emailotp.adapter import get_adapter
from django_emailotp.crypto import email_pseudonym
from django_emailotp.models import AuditEventType, AuditOutcome, Challenge, LockoutScope
from django_emailotp.requestinfo import RequestMeta
from django_emailotp.services import budgets
from django_emailotp.services.challenges import create_challenge, destination_for
from django_emailotp.services.lockouts import locked_quietly
from django_emailotp.services.verification import VerificationResult, VerifyReason, verify_challenge


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
    Both make the same queries in the same order: the user lookup, the sign-in lock's lookup (which finds nothing
    for an unknown address), the cooldown's, the row and its audit rows; delivery always runs after the response's
    work (a thread for in-process delivery, Celery otherwise), so the time taken does not tell either.

    The per-IP limit is checked first, before any database lookup (:class:`RateLimited`). A locked sign-in path
    and the per-address limits are answered exactly like an accepted request, without an email (SECURITY.md rule 8);
    the cooldown applies alike to every address. Raises :class:`NoEmailAddress` for input that is not one valid
    address.
    """
    address = delivery.clean_address(email)
    budgets.refuse_past_ip_limit(address, purposes.SIGN_IN, request)
    adapter = get_adapter()
    user = adapter.get_user_by_email(address)
    meta = RequestMeta.from_request(request, create_binding=True)
    known_id = user.pk if user is not None else None
    # The account's own address; the typed one was cleaned already, so it is checked again only if it differs.
    own = adapter.destination_for(user) if user is not None else None
    destination = address if user is None or own == address else destination_for(user, None)
    locked = locked_quietly(known_id, LockoutScope.SIGN_IN, address=destination, purpose=purposes.SIGN_IN, meta=meta)
    wanted = user is not None or adapter.can_create_account(address, request)
    # A locked account's challenge is the address's alone, as for an address without an account: its wrong codes
    # then count and answer exactly like those (attempts left, burning), and no lock shows.
    challenge = create_challenge(
        user=None if locked else user,
        address=destination,
        purpose=purposes.SIGN_IN,
        kind=budgets.SendKind.ANONYMOUS,
        meta=meta,
        request=request,
        send_email=wanted and not locked,
        in_background=True,
    )
    reason = "unknown_address" if user is None else "locked_out" if locked else ""
    audit.record(
        AuditEventType.SIGN_IN_REQUESTED,
        AuditOutcome.INFO,
        reason=reason,
        user_id=known_id,
        purpose=purposes.SIGN_IN,
        challenge_id=challenge.pk,
        email_pseudonym=email_pseudonym(address),
        meta=meta,
        data={"email_sent": challenge.send_email},
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
