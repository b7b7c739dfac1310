"""The step-up pages: prompt, send, verify, and re-submitting a kept POST. Thin: the rules are in services."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required, login_required
from django.contrib.auth.forms import AuthenticationForm
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.http.response import HttpResponseBase
from django.shortcuts import render, resolve_url
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext_lazy as _
from django.views import View
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from django_emailotp import replay, services, texts
from django_emailotp.conf import app_settings
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
from django_emailotp.forms import BackupCodeForm, CodeForm, EmailForm, LoginCodeForm
from django_emailotp.models import ChallengeStatus
from django_emailotp.purposes import (
    LOGIN,
    SIGN_IN,
    STEP_UP,
    VERIFY_EMAIL,
    is_step_up_purpose,
    purpose_label,
)
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
        try:
            result = services.complete_step_up(
                flow["challenge"], form.cleaned_data["code"], request=request, purpose=purpose
            )
        except LimiterUnavailable as exc:
            return refused(request, exc)
        if result.reason in (VerifyReason.LOCKED_OUT, VerifyReason.RATE_LIMITED):
            form.add_error("code", texts.VERIFY_ERRORS[result.reason])
            response = self.render(request, purpose, flow, form, status=429)
            response["Retry-After"] = str(result.retry_after)
            return response
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
    purpose = _step_up_purpose(request.POST.get("purpose", STEP_UP))
    if purpose is None:
        return _bad_purpose()
    flow = _flow(request, purpose)
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


def verify_error(result: services.VerificationResult) -> str:
    """The message for a failed code; the guess that burned it says the code is gone, not "try again"."""
    assert result.reason is not None
    reason = result.reason
    challenge = result.challenge
    if reason == VerifyReason.INVALID_CODE and challenge is not None and challenge.status == ChallengeStatus.BURNED:
        reason = VerifyReason.BURNED
    return str(texts.VERIFY_ERRORS[reason])


def finish_step_up(request: HttpRequest, purpose: str) -> HttpResponse:
    """After a grant: re-submit the kept POST, or go to the validated next URL."""
    finished = request.session.get(FLOW_SESSION_KEY, {}).pop(purpose, {})
    _save(request)
    if finished.get("replay"):
        return HttpResponseRedirect(f"{reverse('emailotp:continue')}?{urlencode({'token': finished['replay']})}")
    target = safe_next(request, finished.get("next")) or resolve_url(settings.LOGIN_REDIRECT_URL)
    return HttpResponseRedirect(target)


@never_cache
@login_required
@require_POST
@sensitive_post_parameters("backup_code")
def verify_backup_code(request: HttpRequest) -> HttpResponse:
    """Step up with a backup code instead of an emailed one."""
    purpose = _step_up_purpose(request.POST.get("purpose", STEP_UP))
    if purpose is None:
        return _bad_purpose()
    form = BackupCodeForm(request.POST)
    if form.is_valid():
        try:
            result = services.complete_step_up_with_backup_code(
                request, form.cleaned_data["backup_code"], purpose=purpose
            )
        except LimiterUnavailable as exc:
            return refused(request, exc)
        if result.success:
            return finish_step_up(request, purpose)
        form.add_error("backup_code", texts.BACKUP_CODE_ERRORS[str(result.reason)])
        if result.reason == services.BackupCodeReason.RATE_LIMITED:
            response = StepUpView().render(
                request, purpose, _flow(request, purpose), CodeForm(), status=429, backup_form=form
            )
            response["Retry-After"] = str(result.retry_after)
            return response
    return StepUpView().render(request, purpose, _flow(request, purpose), CodeForm(), status=400, backup_form=form)


@never_cache
@login_required
def backup_codes(request: HttpRequest) -> HttpResponse:
    """How many backup codes are left, and a button to make a new set (which needs a fresh step-up)."""
    return render(
        request,
        "django_emailotp/backup_codes.html",
        {"remaining": services.backup_codes_remaining(request.user), "codes": None},
    )


@never_cache
@login_required
@require_POST
@step_up_required
def generate_backup_codes(request: HttpRequest) -> HttpResponse:
    """A new set, shown once (and offered as a text file); every older code stops working."""
    codes = services.regenerate_backup_codes(request.user, request=request)
    text = render_to_string("django_emailotp/backup_codes.txt", {"codes": codes, "site_name": app_settings.SITE_NAME})
    return render(
        request,
        "django_emailotp/backup_codes.html",
        {"remaining": len(codes), "codes": codes, "download": "data:text/plain;charset=utf-8," + quote(text)},
    )


def message_page(request: HttpRequest, title: object, message: object, *, status: int) -> HttpResponse:
    """A page that only explains (429, 410, 503), with a way back."""
    context = {"title": title, "message": message, "back_url": resolve_url(settings.LOGIN_REDIRECT_URL)}
    return render(request, "django_emailotp/message.html", context, status=status)


def refused(request: HttpRequest, error: Exception) -> HttpResponse:
    """429 (locked out, rate limited) or 503 (limiter down) with Retry-After: never a 403."""
    message: object
    if isinstance(error, LockedOut):
        message, status, retry_after = (
            texts.LOCKED_OUT % {"time": error.locked_until.astimezone(UTC).strftime("%H:%M")},
            429,
            error.retry_after,
        )
    elif isinstance(error, RateLimited):
        message, status, retry_after = (
            texts.RATE_LIMITED % {"minutes": max(1, math.ceil(error.retry_after / 60))},
            429,
            error.retry_after,
        )
    else:
        message, status, retry_after = texts.LIMITER_DOWN, 503, 30
    response = message_page(request, texts.PLEASE_WAIT, message, status=status)
    response["Retry-After"] = str(retry_after)
    return response


@never_cache
@login_required
def continue_post(request: HttpRequest) -> HttpResponse:
    """Re-submit a POST kept when it hit a protected view: once, to the same path, with a fresh CSRF token."""
    saved = replay.pop(request, request.GET.get("token", ""))
    if saved is None:
        return message_page(request, texts.FORM_EXPIRED, texts.REPLAY_GONE, status=410)
    return render(request, "django_emailotp/replay.html", {"action": saved["path"], "fields": saved["fields"]})


# ---------------------------------------------------------------------------------------------------------------
# Second factor at login. The password step is Django's LoginView; a login that needs a code waits in the session
# (services.begin_login) and only services.complete_login* call login().

SECOND_FACTOR_FLOW = "second_factor"
DEVICES_FLOW = "devices"


def _notice(level: str, text: object) -> dict[str, str]:
    return {"level": level, "text": str(text)}


def _backend_of(user: Any) -> str:
    # authenticate() sets user.backend; a custom form that skips it can only mean the single configured backend.
    return getattr(user, "backend", None) or settings.AUTHENTICATION_BACKENDS[0]


class LoginView(auth_views.LoginView):
    """A drop-in for ``django.contrib.auth.views.LoginView`` that asks for an email code after the password when
    ``EMAIL_OTP_LOGIN_POLICY`` wants one (and the browser is not remembered). Otherwise it is Django's view."""

    def form_valid(self, form: AuthenticationForm) -> HttpResponse:
        request = self.request
        user = form.get_user()
        if not services.second_factor_needed(request, user):
            return super().form_valid(form)
        flow = _flow(request, LOGIN)
        flow.clear()
        # next is checked here, when it is stored, and again when it is used.
        next_url = safe_next(request, self.get_redirect_url()) or ""
        try:
            challenge = services.begin_login(
                request, user, _backend_of(user), next_url=next_url, login_url=request.path
            )
        except (LockedOut, RateLimited) as exc:
            return _login_refused(request, exc)
        except LimiterUnavailable as exc:
            return refused(request, exc)
        except DeliveryUnavailable:
            flow["notice"] = _notice("error", texts.DELIVERY_DOWN)
        except NoEmailAddress:
            flow["notice"] = _notice("error", texts.NO_ADDRESS)
        else:
            minutes = round(app_settings.CODE_TTL / 60)
            flow["notice"] = _notice(
                "info", texts.LOGIN_CODE_SENT % {"email": mask_address(challenge.email), "minutes": minutes}
            )
        _save(request)
        return HttpResponseRedirect(reverse("emailotp:login-verify"))


class AdminLoginView(LoginView):
    """The admin's login page with the second factor. Put ``path("admin/login/", AdminLoginView.as_view())``
    before ``admin.site.urls`` (or set ``admin.site.login = AdminLoginView.as_view()``)."""

    template_name = "admin/login.html"
    admin_site: Any = None

    def get_form_class(self) -> Any:
        from django.contrib.admin.forms import AdminAuthenticationForm

        return self.authentication_form or AdminAuthenticationForm

    def site(self) -> Any:
        from django.contrib import admin

        return self.admin_site or admin.site

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if self.site().has_permission(request):
            return HttpResponseRedirect(reverse("admin:index", current_app=self.site().name))
        return super().get(request, *args, **kwargs)

    def get_default_redirect_url(self) -> str:
        return reverse("admin:index", current_app=self.site().name)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.update(
            self.site().each_context(self.request),
            title=_("Log in"),
            subtitle=None,
            app_path=self.request.get_full_path(),
            username=self.request.user.get_username(),
        )
        return context


def _restart_url(request: HttpRequest) -> str:
    """Where to enter the password again: the page the pending login started on, else ``LOGIN_URL``."""
    state = request.session.get(services.LOGIN_SESSION_KEY)
    started = state.get("login_url") if isinstance(state, dict) else None
    return safe_next(request, started) or resolve_url(settings.LOGIN_URL)


def _restart(request: HttpRequest) -> HttpResponse:
    """No pending login here (expired, finished, or another browser): back to the password."""
    url = _restart_url(request)
    services.cancel_login(request)
    return HttpResponseRedirect(url)


def _render_login(
    request: HttpRequest,
    pending: services.PendingLogin,
    form: LoginCodeForm,
    *,
    status: int = 200,
    attempts_remaining: int | None = None,
    backup_form: BackupCodeForm | None = None,
) -> HttpResponse:
    """The code page of a pending login: the step-up page's template with the login flow's actions."""
    flow = _flow(request, LOGIN)
    notice = flow.pop("notice", None)
    if notice is not None:
        _save(request)
    challenge = pending.challenge
    address = getattr(pending.user, pending.user.get_email_field_name(), "") or ""
    if attempts_remaining is None and challenge is not None:
        attempts_remaining = challenge.max_attempts - challenge.attempts
    context = {
        "purpose": LOGIN,
        "purpose_label": purpose_label(LOGIN),
        "masked_email": mask_address(address) if address else "",
        "challenge": challenge,
        "resend_in": services.resend_available_in(challenge) if challenge else 0,
        "attempts_remaining": attempts_remaining,
        "form": form,
        "notice": notice,
        "cancel_url": pending.login_url or resolve_url(settings.LOGIN_URL),
        "code_length": app_settings.CODE_LENGTH,
        "backup_form": backup_form or BackupCodeForm(),
        "has_backup_codes": services.backup_codes_remaining(pending.user) > 0,
        "remember_days": app_settings.TRUSTED_DEVICE_DAYS,
    }
    return render(request, "django_emailotp/login_verify.html", context, status=status)


def _login_refused(request: HttpRequest, error: LockedOut | RateLimited) -> HttpResponse:
    """429 with Retry-After on the code page: no email code now, but a backup code still finishes the login."""
    pending = services.pending_login(request)
    if pending is None:  # pragma: no cover - begin_login saved it just before raising
        return refused(request, error)
    if isinstance(error, LockedOut):
        text = texts.LOGIN_LOCKED_OUT % {"time": error.locked_until.astimezone(UTC).strftime("%H:%M")}
    else:
        text = texts.LOGIN_RATE_LIMITED % {"minutes": max(1, math.ceil(error.retry_after / 60))}
    _flow(request, LOGIN)["notice"] = _notice("error", text)
    response = _render_login(request, pending, LoginCodeForm(), status=429)
    response["Retry-After"] = str(error.retry_after)
    return response


def _finish_login(request: HttpRequest, pending: services.PendingLogin) -> HttpResponseRedirect:
    request.session.get(FLOW_SESSION_KEY, {}).pop(LOGIN, None)
    _save(request)
    return HttpResponseRedirect(safe_next(request, pending.next_url) or resolve_url(settings.LOGIN_REDIRECT_URL))


@method_decorator([never_cache, login_not_required, sensitive_post_parameters("code")], name="dispatch")
class LoginVerifyView(View):
    """GET: the code form of a pending login. POST: check the code; right, log in (and maybe remember the browser)."""

    def get(self, request: HttpRequest) -> HttpResponse:
        pending = services.pending_login(request)
        if pending is None:
            return _restart(request)
        return _render_login(request, pending, LoginCodeForm())

    def post(self, request: HttpRequest) -> HttpResponse:
        pending = services.pending_login(request)
        form = LoginCodeForm(request.POST)
        try:
            if pending is None:
                services.complete_login(request, request.POST.get("code", ""))  # audited as expired / not found
                return _restart(request)
            if not form.is_valid():
                return _render_login(request, pending, form, status=400)
            result = services.complete_login(request, form.cleaned_data["code"])
        except LimiterUnavailable as exc:
            return refused(request, exc)
        if result.success:
            finished = _finish_login(request, pending)
            if form.cleaned_data["remember"]:
                services.remember_device(request, pending.user, finished)
            return finished
        challenge = result.challenge
        form.add_error("code", verify_error(result))
        pending = services.pending_login(request) or pending
        if result.reason in (VerifyReason.LOCKED_OUT, VerifyReason.RATE_LIMITED):
            response = _render_login(request, pending, form, status=429)
            response["Retry-After"] = str(result.retry_after)
            return response
        remaining = result.attempts_remaining if challenge is not None else None
        return _render_login(request, pending, form, status=400, attempts_remaining=remaining)


@never_cache
@login_not_required
@require_POST
def login_resend(request: HttpRequest) -> HttpResponse:
    """A new login code (after the cooldown); Post/Redirect/Get back to the code page."""
    if services.pending_login(request) is None:
        return _restart(request)
    flow = _flow(request, LOGIN)
    try:
        challenge = services.resend_login_code(request)
    except (LockedOut, RateLimited) as exc:
        return _login_refused(request, exc)
    except LimiterUnavailable as exc:
        return refused(request, exc)
    except ResendCooldown as exc:
        flow["notice"] = _notice("error", texts.RESEND_WAIT % {"seconds": exc.retry_after})
    except DeliveryUnavailable:
        flow["notice"] = _notice("error", texts.DELIVERY_DOWN)
    else:
        minutes = round(app_settings.CODE_TTL / 60)
        flow["notice"] = _notice("info", texts.CODE_SENT % {"email": mask_address(challenge.email), "minutes": minutes})
    _save(request)
    return HttpResponseRedirect(reverse("emailotp:login-verify"))


@never_cache
@login_not_required
@require_POST
@sensitive_post_parameters("backup_code")
def login_backup_code(request: HttpRequest) -> HttpResponse:
    """Finish a pending login with a backup code instead of the emailed one."""
    pending = services.pending_login(request)
    if pending is None:
        return _restart(request)
    form = BackupCodeForm(request.POST)
    status = 400
    if form.is_valid():
        try:
            result = services.complete_login_with_backup_code(request, form.cleaned_data["backup_code"])
        except LimiterUnavailable as exc:
            return refused(request, exc)
        if result.success:
            return _finish_login(request, pending)
        form.add_error("backup_code", texts.BACKUP_CODE_ERRORS[str(result.reason)])
        if result.reason == services.BackupCodeReason.RATE_LIMITED:
            status = 429
            response = _render_login(request, pending, LoginCodeForm(), status=status, backup_form=form)
            response["Retry-After"] = str(result.retry_after)
            return response
    return _render_login(request, pending, LoginCodeForm(), status=status, backup_form=form)


@never_cache
@login_required
def second_factor(request: HttpRequest) -> HttpResponse:
    """The user's sign-in codes setting: on or off (a choice only under the "optional" policy)."""
    notice = _flow(request, SECOND_FACTOR_FLOW).pop("notice", None)
    _save(request)
    context = {
        "notice": notice,
        "choice_allowed": services.second_factor_choice_allowed(),
        "enabled": services.second_factor_enabled(request.user),
        "required": services.second_factor_required(request.user),
        "remember_days": app_settings.TRUSTED_DEVICE_DAYS,
        "device_count": len(services.trusted_devices(request.user, request)),
    }
    return render(request, "django_emailotp/second_factor.html", context)


@never_cache
@login_required
@require_POST
@step_up_required
def change_second_factor(request: HttpRequest) -> HttpResponse:
    """Turn sign-in codes on (``enabled=on``) or off; needs a fresh step-up, and the user is emailed."""
    enabled = request.POST.get("enabled") == "on"
    services.set_second_factor(request.user, enabled, request=request)  # 403 unless the policy is "optional"
    _flow(request, SECOND_FACTOR_FLOW)["notice"] = _notice(
        "info", texts.SECOND_FACTOR_ON if enabled else texts.SECOND_FACTOR_OFF
    )
    _save(request)
    return HttpResponseRedirect(reverse("emailotp:second-factor"))


@never_cache
@login_required
def devices(request: HttpRequest) -> HttpResponse:
    """GET: the user's remembered browsers. POST ``device=<id>``: forget one (no step-up: it only takes trust away)."""
    if request.method == "POST":
        devices_now = {str(device.pk): device for device in services.trusted_devices(request.user, request)}
        device = devices_now.get(request.POST.get("device", ""))
        response = HttpResponseRedirect(reverse("emailotp:devices"))
        if device is not None and services.forget_device(request.user, device.pk, request=request):
            _flow(request, DEVICES_FLOW)["notice"] = _notice("info", texts.DEVICE_FORGOTTEN)
            _save(request)
            if device.is_current:  # type: ignore[attr-defined]
                response.delete_cookie(app_settings.TRUSTED_DEVICE_COOKIE, samesite="Lax")
        return response
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD", "POST"])
    notice = _flow(request, DEVICES_FLOW).pop("notice", None)
    _save(request)
    context = {
        "notice": notice,
        "devices": services.trusted_devices(request.user, request),
        "remember_days": app_settings.TRUSTED_DEVICE_DAYS,
    }
    return render(request, "django_emailotp/devices.html", context)


# ---------------------------------------------------------------------------------------------------------------
# Passwordless sign-in: address -> code -> signed in. Every address gets the same pages, cookies and redirects.

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
            response = _render_sign_in_form(request, form, next_url, status=429)
            response["Retry-After"] = str(exc.retry_after)
            return response
        state["notice"] = _notice("error", wait)
    except DeliveryUnavailable:
        form.add_error(None, texts.DELIVERY_DOWN)
        return _render_sign_in_form(request, form, next_url, status=503)
    except NoEmailAddress:
        form.add_error("email", texts.INVALID_ADDRESS)
        return _render_sign_in_form(request, form, next_url, status=400)
    else:
        minutes = round(app_settings.CODE_TTL / 60)
        resend_at = challenge.created_at.timestamp() + app_settings.RESEND_COOLDOWN
        state = {
            "challenge": str(challenge.pk),
            "email": address,
            "expires_at": challenge.expires_at.timestamp(),
            "resend_at": resend_at,
            "next": next_url,
            "misses": 0,
            "notice": _notice("info", texts.SIGN_IN_CODE_SENT % {"email": mask_address(address), "minutes": minutes}),
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
    notice = state.pop("notice", None)
    if notice is not None:
        _save(request)
    now = timezone.now().timestamp()
    context = {
        "purpose": SIGN_IN,
        "purpose_label": purpose_label(SIGN_IN),
        "masked_email": mask_address(state["email"]),
        "challenge": {"expires_at": datetime.fromtimestamp(state["expires_at"], tz=UTC)},
        "resend_in": max(0, math.ceil(state["resend_at"] - now)),
        "attempts_remaining": attempts_remaining,
        "form": form,
        "notice": notice,
        "cancel_url": reverse("emailotp:sign-in"),
        "code_length": app_settings.CODE_LENGTH,
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
            return HttpResponseRedirect(
                safe_next(request, state.get("next")) or resolve_url(settings.LOGIN_REDIRECT_URL)
            )
        verification = result.verification
        assert verification.reason is not None
        if verification.reason == VerifyReason.RATE_LIMITED:
            form.add_error("code", texts.VERIFY_ERRORS[verification.reason])
            response = _render_sign_in_code(request, state, form, status=429)
            response["Retry-After"] = str(verification.retry_after)
            return response
        reason, remaining = verification.reason, None
        if reason in (VerifyReason.NOT_FOUND, VerifyReason.WRONG_BINDING):
            # No such challenge here (a look-alike answer to an over-limit request): count the misses as a real
            # code would, so the page behaves like one.
            state["misses"] = state.get("misses", 0) + 1
            _save(request)
            remaining = max(0, app_settings.MAX_ATTEMPTS - state["misses"])
            reason = VerifyReason.INVALID_CODE if remaining else VerifyReason.BURNED
        elif verification.challenge is not None and reason != VerifyReason.MALFORMED:
            remaining = verification.attempts_remaining
            if reason == VerifyReason.INVALID_CODE and verification.challenge.status == ChallengeStatus.BURNED:
                reason = VerifyReason.BURNED
        form.add_error("code", texts.VERIFY_ERRORS[reason])
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


# ---------------------------------------------------------------------------------------------------------------
# Email address verification and change

# The verification in progress: challenge id, the address it confirms, whether it is a change, a notice.
EMAIL_SESSION_KEY = "_emailotp_email"


def _email_state(request: HttpRequest) -> dict[str, Any]:
    state: dict[str, Any] = request.session.setdefault(EMAIL_SESSION_KEY, {})
    return state


def _current_address(user: Any) -> str:
    return getattr(user, user.get_email_field_name(), "") or ""


def _email_code_sent(request: HttpRequest, send: Any) -> HttpResponse:
    """Run a send, remember its challenge (or why it failed), and Post/Redirect/Get to the code page."""
    state = _email_state(request)
    try:
        challenge = send()
    except (LockedOut, RateLimited, LimiterUnavailable) as exc:
        return refused(request, exc)
    except ResendCooldown as exc:
        state["notice"] = _notice("error", texts.RESEND_WAIT % {"seconds": exc.retry_after})
    except DeliveryUnavailable:
        state["notice"] = _notice("error", texts.DELIVERY_DOWN)
    except NoEmailAddress:
        state["notice"] = _notice("error", texts.INVALID_ADDRESS)
    else:
        minutes = round(app_settings.CODE_TTL / 60)
        state.update(
            challenge=str(challenge.pk),
            email=challenge.action,
            change=bool(challenge.context.get("change")),
            notice=_notice(
                "info", texts.EMAIL_CODE_SENT % {"email": mask_address(challenge.email), "minutes": minutes}
            ),
        )
    _save(request)
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
    current = _current_address(request.user)
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
    current = _current_address(request.user)
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
            response = self.render(request, form, status=429)
            response["Retry-After"] = str(result.retry_after)
            return response
        reason, challenge = result.reason, result.challenge
        if reason == VerifyReason.INVALID_CODE and challenge and challenge.status == ChallengeStatus.BURNED:
            reason = VerifyReason.BURNED
        form.add_error("code", texts.VERIFY_ERRORS[reason])
        remaining = result.attempts_remaining if challenge is not None else None
        return self.render(request, form, status=400, attempts_remaining=remaining)

    def render(
        self, request: HttpRequest, form: CodeForm, *, status: int = 200, attempts_remaining: int | None = None
    ) -> HttpResponse:
        state = _email_state(request)
        notice = state.pop("notice", None)
        _save(request)
        challenge = services.live_challenge_for(request, state.get("challenge"), purpose=VERIFY_EMAIL)
        address = state.get("email") if challenge is not None else _current_address(request.user)
        context = {
            "purpose": VERIFY_EMAIL,
            "purpose_label": purpose_label(VERIFY_EMAIL),
            "masked_email": mask_address(address) if address else "",
            "email": address,
            "change": bool(state.get("change")) and challenge is not None,
            "verified": services.email_verified(request.user),
            "challenge": challenge,
            "resend_in": services.resend_available_in(challenge) if challenge else 0,
            "attempts_remaining": attempts_remaining,
            "form": form,
            "notice": notice,
            "cancel_url": resolve_url(settings.LOGIN_REDIRECT_URL),
            "code_length": app_settings.CODE_LENGTH,
            "has_backup_codes": False,
        }
        return render(request, "django_emailotp/email_verify.html", context, status=status)
