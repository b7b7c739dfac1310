"""The step-up pages: the prompt, sending a code, checking it, and re-submitting the POST kept when a protected view
asked for a fresh step-up. Thin: the rules are in services."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect
from django.shortcuts import render, resolve_url
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from django_emailotp import replay, services, texts
from django_emailotp.exceptions import (
    DeliveryUnavailable,
    LimiterUnavailable,
    LockedOut,
    NoEmailAddress,
    RateLimited,
    ResendCooldown,
)
from django_emailotp.forms import BackupCodeForm, CodeForm
from django_emailotp.purposes import STEP_UP, is_step_up_purpose
from django_emailotp.services import VerifyReason
from django_emailotp.views.common import (
    code_page_context,
    code_sent_notice,
    end_flow,
    flow_state,
    message_page,
    redirect_to_next,
    refused,
    safe_next,
    send_failed_notice,
    session_changed,
    take_notice,
    verify_error,
    with_retry_after,
)


def step_up_purpose(value: object) -> str | None:
    """The purpose a step-up page was asked for, if it is one (login, sign-in and verification codes are not)."""
    return value if isinstance(value, str) and is_step_up_purpose(value) else None


def bad_purpose() -> HttpResponse:
    return HttpResponseBadRequest(str(texts.UNKNOWN_PURPOSE), content_type="text/plain; charset=utf-8")


def _page_url(purpose: str) -> str:
    return f"{reverse('emailotp:verify')}?{urlencode({'purpose': purpose})}"


@method_decorator([never_cache, login_required, sensitive_post_parameters("code")], name="dispatch")
class StepUpView(View):
    """GET: the prompt (and the code form once a code was sent). POST: check the code."""

    template_name = "django_emailotp/verify.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        purpose = step_up_purpose(request.GET.get("purpose", STEP_UP))
        if purpose is None:
            return bad_purpose()
        flow = flow_state(request, purpose)
        # next is checked when stored and again when used.
        if "next" in request.GET:
            flow["next"] = safe_next(request, request.GET["next"])
            flow["replay"] = request.GET.get("replay") or None
            session_changed(request)
        return self.render(request, purpose, flow, CodeForm())

    def post(self, request: HttpRequest) -> HttpResponse:
        purpose = step_up_purpose(request.POST.get("purpose", STEP_UP))
        if purpose is None:
            return bad_purpose()
        flow = flow_state(request, purpose)
        form = CodeForm(request.POST)
        if not flow.get("challenge"):
            form.add_error(None, texts.SEND_FIRST)
            return self.render(request, purpose, flow, form, status=400)
        if not form.is_valid():
            return self.render(request, purpose, flow, form, status=400)
        try:
            result = services.complete_step_up(
                flow["challenge"], form.cleaned_data["code"], request=request, purpose=purpose
            )
        except LimiterUnavailable as exc:
            return refused(request, exc)
        if result.reason in (VerifyReason.LOCKED_OUT, VerifyReason.RATE_LIMITED):
            form.add_error("code", texts.VERIFY_ERRORS[result.reason])
            return with_retry_after(self.render(request, purpose, flow, form, status=429), result.retry_after)
        if not result.success:
            challenge = result.challenge
            form.add_error("code", verify_error(result))
            # Without a challenge in the result (a malformed code costs no attempt), count from the live one.
            remaining = result.attempts_remaining if challenge is not None else None
            return self.render(request, purpose, flow, form, status=400, attempts_remaining=remaining)
        return finish_step_up(request, purpose)

    def render(
        self,
        request: HttpRequest,
        purpose: str,
        flow: dict[str, Any],
        form: CodeForm,
        *,
        status: int = 200,
        attempts_remaining: int | None = None,
        backup_form: BackupCodeForm | None = None,
    ) -> HttpResponse:
        challenge = services.live_challenge_for(request, flow.get("challenge"), purpose=purpose)
        notice = take_notice(request, flow)
        if attempts_remaining is None and challenge is not None:
            attempts_remaining = challenge.max_attempts - challenge.attempts
        context = {
            **code_page_context(
                purpose,
                getattr(request.user, "email", "") or "",
                challenge,
                form,
                notice,
                attempts_remaining=attempts_remaining,
                cancel_url=resolve_url(settings.LOGIN_REDIRECT_URL),
            ),
            "replay_pending": bool(flow.get("replay")),
            "action": replay.kept_action(request, flow["replay"]) if flow.get("replay") else "",
            "backup_form": backup_form or BackupCodeForm(),
            "has_backup_codes": services.backup_codes_remaining(request.user) > 0,
        }
        return render(request, self.template_name, context, status=status)


@never_cache
@login_required
@require_POST
def send_code(request: HttpRequest) -> HttpResponse:
    """Send (or re-send) a code for the purpose; Post/Redirect/Get back to the prompt."""
    purpose = step_up_purpose(request.POST.get("purpose", STEP_UP))
    if purpose is None:
        return bad_purpose()
    flow = flow_state(request, purpose)
    # The action comes from the POST kept in the session for this flow, never from the query string or form.
    action = replay.kept_action(request, flow["replay"]) if flow.get("replay") else ""
    try:
        challenge = services.issue_challenge(
            user=request.user,  # type: ignore[arg-type]
            purpose=purpose,
            request=request,
            action=action,
        )
    except (LockedOut, RateLimited, LimiterUnavailable) as exc:
        return refused(request, exc)
    except (ResendCooldown, DeliveryUnavailable, NoEmailAddress) as exc:
        flow["notice"] = send_failed_notice(exc)
    else:
        flow["challenge"] = str(challenge.pk)
        flow["notice"] = code_sent_notice(texts.CODE_SENT, challenge.email)
        if flow.get("replay"):
            replay.bind_to_challenge(request, flow["replay"], challenge.expires_at.timestamp())
    session_changed(request)
    return HttpResponseRedirect(_page_url(purpose))


def finish_step_up(request: HttpRequest, purpose: str) -> HttpResponse:
    """After a grant: re-submit the kept POST, or go to the validated next URL."""
    finished = end_flow(request, purpose)
    if finished.get("replay"):
        return HttpResponseRedirect(f"{reverse('emailotp:continue')}?{urlencode({'token': finished['replay']})}")
    return redirect_to_next(request, finished.get("next"))


@never_cache
@login_required
def continue_post(request: HttpRequest) -> HttpResponse:
    """Re-submit a POST kept when it hit a protected view: once, to the same path, with a fresh CSRF token."""
    saved = replay.pop(request, request.GET.get("token", ""))
    if saved is None:
        return message_page(request, texts.FORM_EXPIRED, texts.REPLAY_GONE, status=410)
    return render(request, "django_emailotp/replay.html", {"action": saved["path"], "fields": saved["fields"]})
