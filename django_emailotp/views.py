"""The step-up pages: prompt, send, verify, and re-submitting a kept POST. Thin: the rules are in services."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect
from django.shortcuts import render, resolve_url
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import View
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from django_emailotp import replay, services, texts
from django_emailotp.conf import app_settings
from django_emailotp.delivery import mask_address
from django_emailotp.exceptions import DeliveryUnavailable, NoEmailAddress, ResendCooldown
from django_emailotp.forms import CodeForm
from django_emailotp.models import ChallengeStatus
from django_emailotp.purposes import STEP_UP, is_step_up_purpose, purpose_label
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


def _step_up_purpose(value: object) -> str | None:
    return value if isinstance(value, str) and is_step_up_purpose(value) else None


def _flow(request: HttpRequest, purpose: str) -> dict[str, Any]:
    flows = request.session.setdefault(FLOW_SESSION_KEY, {})
    flow: dict[str, Any] = flows.setdefault(purpose, {})
    return flow


def _save(request: HttpRequest) -> None:
    request.session.modified = True


def _page_url(purpose: str) -> str:
    return f"{reverse('emailotp:verify')}?{urlencode({'purpose': purpose})}"


def _bad_purpose() -> HttpResponse:
    return HttpResponseBadRequest(str(texts.UNKNOWN_PURPOSE), content_type="text/plain; charset=utf-8")


@method_decorator([never_cache, login_required, sensitive_post_parameters("code")], name="dispatch")
class StepUpView(View):
    """GET: the prompt (and the code form once a code was sent). POST: check the code."""

    template_name = "django_emailotp/verify.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        purpose = _step_up_purpose(request.GET.get("purpose", STEP_UP))
        if purpose is None:
            return _bad_purpose()
        flow = _flow(request, purpose)
        # next is checked when stored and again when used.
        if "next" in request.GET:
            flow["next"] = safe_next(request, request.GET["next"])
            flow["replay"] = request.GET.get("replay") or None
            _save(request)
        return self.render(request, purpose, flow, CodeForm())

    def post(self, request: HttpRequest) -> HttpResponse:
        purpose = _step_up_purpose(request.POST.get("purpose", STEP_UP))
        if purpose is None:
            return _bad_purpose()
        flow = _flow(request, purpose)
        form = CodeForm(request.POST)
        if not flow.get("challenge"):
            form.add_error(None, texts.SEND_FIRST)
            return self.render(request, purpose, flow, form, status=400)
        if not form.is_valid():
            return self.render(request, purpose, flow, form, status=400)
        result = services.complete_step_up(
            flow["challenge"], form.cleaned_data["code"], request=request, purpose=purpose
        )
        if not result.success:
            assert result.reason is not None
            reason = result.reason
            challenge = result.challenge
            if reason == VerifyReason.INVALID_CODE and challenge and challenge.status == ChallengeStatus.BURNED:
                # The guess that burned the code: say it is gone, not "try again".
                reason = VerifyReason.BURNED
            form.add_error("code", texts.VERIFY_ERRORS[reason])
            # Without a challenge in the result (a malformed code costs no attempt), count from the live one.
            remaining = result.attempts_remaining if challenge is not None else None
            return self.render(request, purpose, flow, form, status=400, attempts_remaining=remaining)
        finished = request.session[FLOW_SESSION_KEY].pop(purpose, {})
        _save(request)
        if finished.get("replay"):
            return HttpResponseRedirect(f"{reverse('emailotp:continue')}?{urlencode({'token': finished['replay']})}")
        target = safe_next(request, finished.get("next")) or resolve_url(settings.LOGIN_REDIRECT_URL)
        return HttpResponseRedirect(target)

    def render(
        self,
        request: HttpRequest,
        purpose: str,
        flow: dict[str, Any],
        form: CodeForm,
        *,
        status: int = 200,
        attempts_remaining: int | None = None,
    ) -> HttpResponse:
        challenge = services.live_challenge_for(request, flow.get("challenge"), purpose=purpose)
        notice = flow.pop("notice", None)
        if notice is not None:
            _save(request)
        address = getattr(request.user, "email", "") or ""
        context = {
            "purpose": purpose,
            "purpose_label": purpose_label(purpose),
            "masked_email": mask_address(address) if address else "",
            "challenge": challenge,
            "resend_in": services.resend_available_in(challenge) if challenge else 0,
            "attempts_remaining": attempts_remaining
            if attempts_remaining is not None
            else (challenge.max_attempts - challenge.attempts if challenge else None),
            "form": form,
            "notice": notice,
            "cancel_url": resolve_url(settings.LOGIN_REDIRECT_URL),
            "code_length": app_settings.CODE_LENGTH,
        }
        return render(request, self.template_name, context, status=status)


@never_cache
@login_required
@require_POST
def send_code(request: HttpRequest) -> HttpResponse:
    """Send (or re-send) a code for the purpose; Post/Redirect/Get back to the prompt."""
    purpose = _step_up_purpose(request.POST.get("purpose", STEP_UP))
    if purpose is None:
        return _bad_purpose()
    flow = _flow(request, purpose)
    try:
        challenge = services.issue_challenge(user=request.user, purpose=purpose, request=request)  # type: ignore[arg-type]
    except ResendCooldown as exc:
        flow["notice"] = {"level": "error", "text": str(texts.RESEND_WAIT % {"seconds": exc.retry_after})}
    except DeliveryUnavailable:
        flow["notice"] = {"level": "error", "text": str(texts.DELIVERY_DOWN)}
    except NoEmailAddress:
        flow["notice"] = {"level": "error", "text": str(texts.NO_ADDRESS)}
    else:
        flow["challenge"] = str(challenge.pk)
        minutes = round(app_settings.CODE_TTL / 60)
        flow["notice"] = {
            "level": "info",
            "text": str(texts.CODE_SENT % {"email": mask_address(challenge.email), "minutes": minutes}),
        }
        if flow.get("replay"):
            replay.bind_to_challenge(request, flow["replay"], challenge.expires_at.timestamp())
    _save(request)
    return HttpResponseRedirect(_page_url(purpose))


@never_cache
@login_required
def continue_post(request: HttpRequest) -> HttpResponse:
    """Re-submit a POST kept when it hit a protected view: once, to the same path, with a fresh CSRF token."""
    saved = replay.pop(request, request.GET.get("token", ""))
    if saved is None:
        return render(
            request, "django_emailotp/replay_gone.html", {"message": texts.REPLAY_GONE, "home": "/"}, status=410
        )
    return render(request, "django_emailotp/replay.html", {"action": saved["path"], "fields": saved["fields"]})
