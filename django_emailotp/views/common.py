"""What every page flow shares: the next-URL check, the per-flow session state and its one-time notices, the code
page's common context, the message for a failed code, and the 429 / 410 / 503 pages."""

from __future__ import annotations

import math
from datetime import UTC
from typing import Any

from django.conf import settings
from django.forms import Form
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render, resolve_url
from django.utils.http import url_has_allowed_host_and_scheme

from django_emailotp import services, texts
from django_emailotp.conf import app_settings
from django_emailotp.delivery import mask_address
from django_emailotp.exceptions import (
    DeliveryUnavailable,
    LockedOut,
    NoEmailAddress,
    RateLimited,
    ResendCooldown,
    SendLimitReached,
)
from django_emailotp.models import Challenge, ChallengeStatus
from django_emailotp.purposes import purpose_label
from django_emailotp.services import VerifyReason

# Per purpose: the live challenge id, the validated next URL, the replay token and a one-time notice.
FLOW_SESSION_KEY = "_emailotp_flow"


def safe_next(request: HttpRequest, url: object) -> str | None:
    """``url`` if it stays on this site (and on HTTPS when the request is secure), else None."""
    if not isinstance(url, str) or not url:
        return None
    allowed = url_has_allowed_host_and_scheme(
        url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return url if allowed else None


def redirect_to_next(request: HttpRequest, url: object) -> HttpResponseRedirect:
    """To ``url`` if :func:`safe_next` lets it through, else to ``LOGIN_REDIRECT_URL``."""
    return HttpResponseRedirect(safe_next(request, url) or resolve_url(settings.LOGIN_REDIRECT_URL))


def flow_state(request: HttpRequest, purpose: str) -> dict[str, Any]:
    """The session state of one flow (created empty): mutate it, then call :func:`session_changed`."""
    flows = request.session.setdefault(FLOW_SESSION_KEY, {})
    flow: dict[str, Any] = flows.setdefault(purpose, {})
    return flow


def session_changed(request: HttpRequest) -> None:
    """The flow states are nested dicts, which the session cannot see change."""
    request.session.modified = True


def end_flow(request: HttpRequest, purpose: str) -> dict[str, Any]:
    """Remove a finished flow's state from the session and return it."""
    finished: dict[str, Any] = request.session.get(FLOW_SESSION_KEY, {}).pop(purpose, {})
    session_changed(request)
    return finished


def make_notice(level: str, text: object) -> dict[str, str]:
    """A one-time notice for the next page: ``level`` is ``"info"`` or ``"error"``."""
    return {"level": level, "text": str(text)}


def code_sent_notice(text: Any, address: str) -> dict[str, str]:
    """The "code sent to j***@example.com, valid for N minutes" notice, worded by ``text``."""
    minutes = round(app_settings.CODE_TTL / 60)
    return make_notice("info", text % {"email": mask_address(address), "minutes": minutes})


def send_failed_notice(
    error: ResendCooldown | DeliveryUnavailable | NoEmailAddress, *, no_address: Any = texts.NO_ADDRESS
) -> dict[str, str]:
    """Why no code was sent, as the notice on the code page."""
    if isinstance(error, ResendCooldown):
        return make_notice("error", texts.RESEND_WAIT % {"seconds": error.retry_after})
    if isinstance(error, DeliveryUnavailable):
        return make_notice("error", texts.DELIVERY_DOWN)
    return make_notice("error", no_address)


def take_notice(request: HttpRequest, state: dict[str, Any]) -> dict[str, str] | None:
    """Pop the one-time notice from a flow's state (shown once)."""
    notice: dict[str, str] | None = state.pop("notice", None)
    if notice is not None:
        session_changed(request)
    return notice


def address_of(user: Any) -> str:
    """The user's email address, whatever the user model calls the field ("" if none)."""
    return getattr(user, user.get_email_field_name(), "") or ""


def code_page_context(
    purpose: str,
    address: str,
    challenge: Challenge | None,
    form: Form,
    notice: dict[str, str] | None,
    *,
    attempts_remaining: int | None,
    cancel_url: str,
) -> dict[str, Any]:
    """What every code page's template gets; each flow adds its own keys."""
    return {
        "purpose": purpose,
        "purpose_label": purpose_label(purpose),
        "masked_email": mask_address(address) if address else "",
        "challenge": challenge,
        "resend_in": services.resend_available_in(challenge) if challenge else 0,
        "attempts_remaining": attempts_remaining,
        "form": form,
        "notice": notice,
        "cancel_url": cancel_url,
        "code_length": app_settings.CODE_LENGTH,
    }


def verify_error(result: services.VerificationResult) -> str:
    """The message for a failed code; the guess that burned it says the code is gone, not "try again"."""
    assert result.reason is not None
    reason = result.reason
    challenge = result.challenge
    if reason == VerifyReason.INVALID_CODE and challenge is not None and challenge.status == ChallengeStatus.BURNED:
        reason = VerifyReason.BURNED
    return str(texts.VERIFY_ERRORS[reason])


def with_retry_after(response: HttpResponse, seconds: object) -> HttpResponse:
    response["Retry-After"] = str(seconds)
    return response


def message_page(request: HttpRequest, title: object, message: object, *, status: int) -> HttpResponse:
    """A page that only explains (429, 410, 503), with a way back."""
    context = {"title": title, "message": message, "back_url": resolve_url(settings.LOGIN_REDIRECT_URL)}
    return render(request, "django_emailotp/message.html", context, status=status)


def refusal_message(error: LockedOut | RateLimited, *, locked_out: Any, rate_limited: Any) -> str:
    """Until when the account is locked (UTC), or in how many minutes to try again."""
    if isinstance(error, LockedOut):
        return str(locked_out % {"time": error.locked_until.astimezone(UTC).strftime("%H:%M")})
    if isinstance(error, SendLimitReached):
        return texts.send_limit_message(error)
    return str(rate_limited % {"minutes": max(1, math.ceil(error.retry_after / 60))})


def refused(request: HttpRequest, error: Exception) -> HttpResponse:
    """429 (locked out, rate limited) or 503 (limiter down) with Retry-After: never a 403."""
    if isinstance(error, LockedOut | RateLimited):
        message = refusal_message(error, locked_out=texts.LOCKED_OUT, rate_limited=texts.RATE_LIMITED)
        response = message_page(request, texts.PLEASE_WAIT, message, status=429)
        return with_retry_after(response, error.retry_after)
    return with_retry_after(message_page(request, texts.PLEASE_WAIT, texts.LIMITER_DOWN, status=503), 30)
