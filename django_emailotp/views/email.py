"""Email address verification and change: a code to the current address (verify it) or to a new one (change to it,
after a fresh step-up), then the code page that confirms it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render, resolve_url
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from django_emailotp import services, texts
from django_emailotp.decorators import step_up_required
from django_emailotp.delivery import mask_address
from django_emailotp.exceptions import (
    DeliveryUnavailable,
    LimiterUnavailable,
    LockedOut,
    NoEmailAddress,
    RateLimited,
    ResendCooldown,
)
from django_emailotp.forms import CodeForm, EmailForm
from django_emailotp.models import Challenge
from django_emailotp.purposes import VERIFY_EMAIL
from django_emailotp.services import VerifyReason
from django_emailotp.views.common import (
    address_of,
    code_page_context,
    code_sent_notice,
    message_page,
    refused,
    send_failed_notice,
    session_changed,
    verify_error,
    with_retry_after,
)

# The verification in progress: challenge id, the address it confirms, whether it is a change, a notice.
EMAIL_SESSION_KEY = "_emailotp_email"


def _email_state(request: HttpRequest) -> dict[str, Any]:
    state: dict[str, Any] = request.session.setdefault(EMAIL_SESSION_KEY, {})
    return state


def _email_code_sent(request: HttpRequest, send: Callable[[], Challenge]) -> HttpResponse:
    """Run a send, remember its challenge (or why it failed), and Post/Redirect/Get to the code page."""
    state = _email_state(request)
    try:
        challenge = send()
    except (LockedOut, RateLimited, LimiterUnavailable) as exc:
        return refused(request, exc)
    except (ResendCooldown, DeliveryUnavailable, NoEmailAddress) as exc:
        state["notice"] = send_failed_notice(exc, no_address=texts.INVALID_ADDRESS)
    else:
        state.update(
            challenge=str(challenge.pk),
            email=challenge.action,
            change=bool(challenge.context.get("change")),
            notice=code_sent_notice(texts.EMAIL_CODE_SENT, challenge.email),
        )
    session_changed(request)
    return HttpResponseRedirect(reverse("emailotp:email-verify"))


@never_cache
@login_required
@step_up_required
def email_change(request: HttpRequest) -> HttpResponse:
    """GET: the new-address form. POST: send a code to the new address (needs a fresh step-up)."""
    form = EmailForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        address = form.cleaned_data["email"]
        return _email_code_sent(
            request, lambda: services.request_email_verification(request.user, address, request=request, change=True)
        )
    current = address_of(request.user)
    context = {"form": form, "masked_email": mask_address(current) if current else ""}
    return render(
        request, "django_emailotp/email_change.html", context, status=400 if request.method == "POST" else 200
    )


@never_cache
@login_required
@require_POST
def email_send(request: HttpRequest) -> HttpResponse:
    """A new code for the address being verified, or a first one for the user's current address."""
    state = _email_state(request)
    if state.get("challenge"):
        challenge_id = state["challenge"]
        return _email_code_sent(
            request, lambda: services.resend_challenge(challenge_id, request=request, purpose=VERIFY_EMAIL)
        )
    current = address_of(request.user)
    return _email_code_sent(
        request, lambda: services.request_email_verification(request.user, current, request=request)
    )


@method_decorator([never_cache, login_required, sensitive_post_parameters("code")], name="dispatch")
class EmailVerifyView(View):
    """GET: the code form (or a button to send a code to the current address). POST: check the code."""

    def get(self, request: HttpRequest) -> HttpResponse:
        return self.render(request, CodeForm())

    def post(self, request: HttpRequest) -> HttpResponse:
        state = _email_state(request)
        form = CodeForm(request.POST)
        if not state.get("challenge"):
            form.add_error(None, texts.SEND_FIRST)
            return self.render(request, form, status=400)
        if not form.is_valid():
            return self.render(request, form, status=400)
        try:
            confirmation = services.confirm_email(
                request, state["challenge"], form.cleaned_data["code"], email=state.get("email")
            )
        except LimiterUnavailable as exc:
            return refused(request, exc)
        result = confirmation.verification
        if result.success:
            request.session.pop(EMAIL_SESSION_KEY, None)
            if confirmation.in_use:
                message: object = texts.EMAIL_IN_USE
            elif confirmation.changed:
                message = texts.EMAIL_CHANGED % {"email": confirmation.email}
            else:
                message = texts.EMAIL_VERIFIED % {"email": confirmation.email}
            return message_page(request, texts.EMAIL_DONE_TITLE, message, status=409 if confirmation.in_use else 200)
        assert result.reason is not None
        if result.reason in (VerifyReason.LOCKED_OUT, VerifyReason.RATE_LIMITED):
            form.add_error("code", texts.VERIFY_ERRORS[result.reason])
            return with_retry_after(self.render(request, form, status=429), result.retry_after)
        form.add_error("code", verify_error(result))
        remaining = result.attempts_remaining if result.challenge is not None else None
        return self.render(request, form, status=400, attempts_remaining=remaining)

    def render(
        self, request: HttpRequest, form: CodeForm, *, status: int = 200, attempts_remaining: int | None = None
    ) -> HttpResponse:
        state = _email_state(request)
        notice = state.pop("notice", None)
        session_changed(request)
        challenge = services.live_challenge_for(request, state.get("challenge"), purpose=VERIFY_EMAIL)
        address = state.get("email") if challenge is not None else address_of(request.user)
        context = {
            **code_page_context(
                VERIFY_EMAIL,
                address or "",
                challenge,
                form,
                notice,
                attempts_remaining=attempts_remaining,
                cancel_url=resolve_url(settings.LOGIN_REDIRECT_URL),
            ),
            "email": address,
            "change": bool(state.get("change")) and challenge is not None,
            "verified": services.email_verified(request.user),
            "has_backup_codes": False,
        }
        return render(request, "django_emailotp/email_verify.html", context, status=status)
