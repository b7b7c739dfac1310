"""Passwordless sign-in: address -> code -> signed in. Every address gets the same pages, cookies and redirects,
whether or not an account has it: the code page is drawn from the session alone."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.http.response import HttpResponseBase
from django.shortcuts import render, resolve_url
from django.urls import reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from django_emailotp import services, texts
from django_emailotp.conf import app_settings
from django_emailotp.exceptions import (
    DeliveryUnavailable,
    LimiterUnavailable,
    NoEmailAddress,
    RateLimited,
    ResendCooldown,
)
from django_emailotp.forms import CodeForm, EmailForm
from django_emailotp.purposes import SIGN_IN
from django_emailotp.services import VerifyReason
from django_emailotp.views.common import (
    code_page_context,
    code_sent_notice,
    make_notice,
    redirect_to_next,
    refused,
    safe_next,
    session_changed,
    take_notice,
    verify_error,
    with_retry_after,
)

# The sign-in in progress: challenge id, the address as typed, expiry, resend time, validated next URL, notice.
SIGN_IN_SESSION_KEY = "_emailotp_sign_in"


def _sign_in_state(request: HttpRequest) -> dict[str, Any] | None:
    state = request.session.get(SIGN_IN_SESSION_KEY)
    return state if isinstance(state, dict) and state.get("challenge") else None


def _require_sign_in_enabled() -> None:
    if not app_settings.SIGN_IN_ENABLED:
        raise Http404("Sign-in by code is off.")


def _render_sign_in_form(request: HttpRequest, form: EmailForm, next_url: str | None, *, status: int) -> HttpResponse:
    context = {"form": form, "next": next_url or "", "cancel_url": resolve_url(settings.LOGIN_URL)}
    return render(request, "django_emailotp/sign_in.html", context, status=status)


def _start_sign_in(request: HttpRequest, address: str, next_url: str | None, form: EmailForm) -> HttpResponse:
    """Ask services for a sign-in code, then Post/Redirect/Get to the code page (the same for every address)."""
    state = _sign_in_state(request)
    try:
        challenge = services.request_sign_in(address, request=request)
    except (RateLimited, LimiterUnavailable) as exc:
        return refused(request, exc)
    except ResendCooldown as exc:
        wait = texts.RESEND_WAIT % {"seconds": exc.retry_after}
        if state is None or state.get("email") != address:
            form.add_error(None, wait)
            return with_retry_after(_render_sign_in_form(request, form, next_url, status=429), exc.retry_after)
        state["notice"] = make_notice("error", wait)
    except DeliveryUnavailable:
        form.add_error(None, texts.DELIVERY_DOWN)
        return _render_sign_in_form(request, form, next_url, status=503)
    except NoEmailAddress:
        form.add_error("email", texts.INVALID_ADDRESS)
        return _render_sign_in_form(request, form, next_url, status=400)
    else:
        resend_at = challenge.created_at.timestamp() + app_settings.RESEND_COOLDOWN
        state = {
            "challenge": str(challenge.pk),
            "email": address,
            "expires_at": challenge.expires_at.timestamp(),
            "resend_at": resend_at,
            "next": next_url,
            "misses": 0,
            "notice": code_sent_notice(texts.SIGN_IN_CODE_SENT, address),
        }
    request.session[SIGN_IN_SESSION_KEY] = state
    return HttpResponseRedirect(reverse("emailotp:sign-in-verify"))


@method_decorator([never_cache, login_not_required, sensitive_post_parameters("email")], name="dispatch")
class SignInView(View):
    """GET: the address form. POST: send a code (to an account with that address, if there is one)."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        _require_sign_in_enabled()
        return super().dispatch(request, *args, **kwargs)

    def get(self, request: HttpRequest) -> HttpResponse:
        return _render_sign_in_form(request, EmailForm(), safe_next(request, request.GET.get("next")), status=200)

    def post(self, request: HttpRequest) -> HttpResponse:
        form = EmailForm(request.POST)
        next_url = safe_next(request, request.POST.get("next"))
        if not form.is_valid():
            return _render_sign_in_form(request, form, next_url, status=400)
        return _start_sign_in(request, form.cleaned_data["email"], next_url, form)


def _render_sign_in_code(
    request: HttpRequest,
    state: dict[str, Any],
    form: CodeForm,
    *,
    status: int = 200,
    attempts_remaining: int | None = None,
) -> HttpResponse:
    """The code page, drawn from the session alone: it cannot differ between addresses with and without accounts."""
    notice = take_notice(request, state)
    now = timezone.now().timestamp()
    context = {
        **code_page_context(
            SIGN_IN,
            state["email"],
            None,
            form,
            notice,
            attempts_remaining=attempts_remaining,
            cancel_url=reverse("emailotp:sign-in"),
        ),
        "challenge": {"expires_at": datetime.fromtimestamp(state["expires_at"], tz=UTC)},
        "resend_in": max(0, math.ceil(state["resend_at"] - now)),
        "has_backup_codes": False,
    }
    return render(request, "django_emailotp/sign_in_verify.html", context, status=status)


@method_decorator([never_cache, login_not_required, sensitive_post_parameters("code")], name="dispatch")
class SignInVerifyView(View):
    """GET: the code form. POST: check the code; when it is right the session is signed in."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        _require_sign_in_enabled()
        if _sign_in_state(request) is None:
            return HttpResponseRedirect(reverse("emailotp:sign-in"))
        return super().dispatch(request, *args, **kwargs)

    def get(self, request: HttpRequest) -> HttpResponse:
        state = _sign_in_state(request)
        assert state is not None
        return _render_sign_in_code(request, state, CodeForm())

    def post(self, request: HttpRequest) -> HttpResponse:
        state = _sign_in_state(request)
        assert state is not None
        form = CodeForm(request.POST)
        if not form.is_valid():
            return _render_sign_in_code(request, state, form, status=400)
        try:
            result = services.complete_sign_in(request, state["challenge"], form.cleaned_data["code"])
        except LimiterUnavailable as exc:
            return refused(request, exc)
        if result.success:
            request.session.pop(SIGN_IN_SESSION_KEY, None)
            return redirect_to_next(request, state.get("next"))
        verification = result.verification
        reason = verification.reason
        assert reason is not None
        if reason == VerifyReason.RATE_LIMITED:
            form.add_error("code", texts.VERIFY_ERRORS[reason])
            return with_retry_after(_render_sign_in_code(request, state, form, status=429), verification.retry_after)
        if reason in (VerifyReason.NOT_FOUND, VerifyReason.WRONG_BINDING):
            # No such challenge here (a look-alike answer to an over-limit request): count the misses as a real
            # code would, so the page behaves like one.
            state["misses"] = state.get("misses", 0) + 1
            session_changed(request)
            remaining: int | None = max(0, app_settings.MAX_ATTEMPTS - state["misses"])
            form.add_error("code", texts.VERIFY_ERRORS[VerifyReason.INVALID_CODE if remaining else VerifyReason.BURNED])
        else:
            counted = verification.challenge is not None and reason != VerifyReason.MALFORMED
            remaining = verification.attempts_remaining if counted else None
            form.add_error("code", verify_error(verification))
        return _render_sign_in_code(request, state, form, status=400, attempts_remaining=remaining)


@never_cache
@login_not_required
@require_POST
def sign_in_resend(request: HttpRequest) -> HttpResponse:
    """A new sign-in code for the same address (after the cooldown)."""
    _require_sign_in_enabled()
    state = _sign_in_state(request)
    if state is None:
        return HttpResponseRedirect(reverse("emailotp:sign-in"))
    return _start_sign_in(request, state["email"], state.get("next"), EmailForm({"email": state["email"]}))
