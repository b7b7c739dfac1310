"""The second factor at login: the policy, the user's own choice, the pending login between the password and the
code, finishing it (Django's ``login()`` runs only here), and remembered browsers.

Writes ``SecondFactor`` and ``TrustedDevice`` rows, the pending login in the session (``LOGIN_SESSION_KEY``), and
the ``second_factor_required``, ``second_factor_changed``, ``login_completed`` and ``trusted_device_*`` audit rows.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings as django_settings
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from django_emailotp import audit, purposes
from django_emailotp.conf import LOGIN_POLICY_OPTIONAL, LOGIN_POLICY_REQUIRED, LOGIN_POLICY_REQUIRED_STAFF, app_settings
from django_emailotp.crypto import binding_hashes
from django_emailotp.exceptions import ResendCooldown, SecondFactorNotOptional
from django_emailotp.models import AuditEventType, AuditOutcome, Challenge, ChallengeStatus, SecondFactor, TrustedDevice
from django_emailotp.requestinfo import RequestMeta, renew_session_binding
from django_emailotp.services import notices
from django_emailotp.services.backup_codes import BackupCodeReason, BackupCodeResult, use_backup_code
from django_emailotp.services.challenges import destination_for, issue_challenge, live_challenge
from django_emailotp.services.common import as_uuid, auth_hash
from django_emailotp.services.verification import VerificationResult, VerifyReason, record_failure, verify_challenge

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
        "auth": auth_hash(user),
        "challenge": str(challenge_id) if challenge_id else "",
        "expires": expires_at.timestamp(),
        "next": next_url,
        "login_url": login_url,
    }


def _move_to_a_fresh_session(request: Any, user: Any) -> None:
    """The pending login goes into a session key made now, so an id planted in the browser before the password
    step (session fixation) is left with nothing; ``login()`` cycles the key again after the code.

    The binding nonce is new too (a planted session's nonce may be known: signed-cookie sessions are readable),
    unless this session already holds this user's pending login: it was made at that password step, and keeping its
    nonce lets the code already sent still work when the password is entered again.
    """
    state = request.session.get(LOGIN_SESSION_KEY)
    entered_again = isinstance(state, dict) and state.get("user") == user._meta.pk.value_to_string(user)
    request.session.cycle_key()
    if not entered_again:
        renew_session_binding(request)


def begin_login(request: Any, user: Any, backend: str, *, next_url: str = "", login_url: str = "") -> Challenge:
    """The password was right and a second factor is needed: send a login code bound to this session.

    Django's ``login()`` is NOT called. The pending state (user, backend, challenge, expiry = the challenge's, the
    already validated ``next_url`` and the page to start over from) lives in the session, under a key made now and
    with a new binding nonce. A resend cooldown reuses the live code. :class:`LockedOut`, :class:`RateLimited` and
    :class:`DeliveryUnavailable` propagate after the pending state is saved (for ``EMAIL_OTP_CODE_TTL``), so a
    backup code can still finish the login.
    """
    _move_to_a_fresh_session(request, user)
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
        live = live_challenge(user, destination_for(user, None), purposes.LOGIN, meta.accepted_bindings)
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
    if user is None or not constant_time_compare(str(state.get("auth", "")), auth_hash(user)):
        return None
    challenge = None
    challenge_id = as_uuid(state.get("challenge"))
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
        challenge_id = as_uuid(state.get("challenge")) if isinstance(state, dict) else None
        return record_failure(None, reason, RequestMeta.from_request(request), challenge_id=challenge_id)
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
    if not constant_time_compare(device.auth_hash, auth_hash(user)):
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
        auth_hash=auth_hash(user),
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
    current_auth = auth_hash(user)
    devices = [
        device
        for device in TrustedDevice.objects.filter(user_id=user.pk, expires_at__gt=timezone.now())
        if constant_time_compare(device.auth_hash, current_auth)
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
