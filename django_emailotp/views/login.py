"""The second factor at login. The password step is Django's LoginView; a login that needs a code waits in the
session (services.begin_login) and only services.complete_login* call login(). Then the code page, a new code, and
finishing with a backup code instead."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render, resolve_url
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.translation import gettext_lazy as _
from django.views import View
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from django_emailotp import services, texts
from django_emailotp.conf import app_settings
from django_emailotp.exceptions import (
    DeliveryUnavailable,
    LimiterUnavailable,
    LockedOut,
    NoEmailAddress,
    RateLimited,
    ResendCooldown,
)
from django_emailotp.forms import BackupCodeForm, LoginCodeForm
from django_emailotp.models import Challenge
from django_emailotp.purposes import LOGIN
from django_emailotp.services import VerifyReason
from django_emailotp.views.backup import answer_backup_code
from django_emailotp.views.common import (
    address_of,
    code_page_context,
    code_sent_notice,
    end_flow,
    flow_state,
    make_notice,
    redirect_to_next,
    refusal_message,
    refused,
    safe_next,
    send_failed_notice,
    session_changed,
    take_notice,
    verify_error,
    with_retry_after,
)


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
        flow_state(request, LOGIN).clear()
        # next is checked here, when it is stored, and again when it is used.
        next_url = safe_next(request, self.get_redirect_url()) or ""
        return _send_login_code(
            request,
            lambda: services.begin_login(request, user, _backend_of(user), next_url=next_url, login_url=request.path),
            sent=texts.LOGIN_CODE_SENT,
            explained=(DeliveryUnavailable, NoEmailAddress),
        )


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
    notice = take_notice(request, flow_state(request, LOGIN))
    challenge = pending.challenge
    if attempts_remaining is None and challenge is not None:
        attempts_remaining = challenge.max_attempts - challenge.attempts
    context = {
        **code_page_context(
            LOGIN,
            address_of(pending.user),
            challenge,
            form,
            notice,
            attempts_remaining=attempts_remaining,
            cancel_url=pending.login_url or resolve_url(settings.LOGIN_URL),
        ),
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
    text = refusal_message(error, locked_out=texts.LOGIN_LOCKED_OUT, rate_limited=texts.LOGIN_RATE_LIMITED)
    flow_state(request, LOGIN)["notice"] = make_notice("error", text)
    return with_retry_after(_render_login(request, pending, LoginCodeForm(), status=429), error.retry_after)


def _send_login_code(
    request: HttpRequest,
    send: Callable[[], Challenge],
    *,
    sent: Any,
    explained: tuple[type[ResendCooldown | DeliveryUnavailable | NoEmailAddress], ...],
) -> HttpResponse:
    """Send a login code and Post/Redirect/Get to the code page, whose notice says how it went: sent (worded by
    ``sent``) or one of the ``explained`` failures. A lockout or rate limit answers 429 on the code page."""
    flow = flow_state(request, LOGIN)
    try:
        challenge = send()
    except (LockedOut, RateLimited) as exc:
        return _login_refused(request, exc)
    except LimiterUnavailable as exc:
        return refused(request, exc)
    except explained as exc:
        flow["notice"] = send_failed_notice(exc)
    else:
        flow["notice"] = code_sent_notice(sent, challenge.email)
    session_changed(request)
    return HttpResponseRedirect(reverse("emailotp:login-verify"))


def _finish_login(request: HttpRequest, pending: services.PendingLogin) -> HttpResponseRedirect:
    end_flow(request, LOGIN)
    return redirect_to_next(request, pending.next_url)


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
            return with_retry_after(_render_login(request, pending, form, status=429), result.retry_after)
        remaining = result.attempts_remaining if challenge is not None else None
        return _render_login(request, pending, form, status=400, attempts_remaining=remaining)


@never_cache
@login_not_required
@require_POST
def login_resend(request: HttpRequest) -> HttpResponse:
    """A new login code (after the cooldown); Post/Redirect/Get back to the code page."""
    if services.pending_login(request) is None:
        return _restart(request)
    return _send_login_code(
        request,
        lambda: services.resend_login_code(request),
        sent=texts.CODE_SENT,
        explained=(ResendCooldown, DeliveryUnavailable),
    )


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
    return answer_backup_code(
        request,
        form,
        use=lambda code: services.complete_login_with_backup_code(request, code),
        finish=lambda: _finish_login(request, pending),
        page=lambda status: _render_login(request, pending, LoginCodeForm(), status=status, backup_form=form),
    )
