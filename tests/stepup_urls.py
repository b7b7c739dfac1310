"""A URLconf for the step-up tests: views protected in every supported way, and a few that must stay open.

Every view appends ``(name, method, fields, file names)`` to :data:`RUNS`, so a test can tell exactly how often a
view body ran, and answers with ``"<name> ran"``.
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib.auth import update_session_auth_hash
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required, login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import get_token
from django.urls import URLPattern, URLResolver, include, path
from django.utils.html import format_html
from django.views import View
from django.views.decorators.http import require_POST

from django_emailotp.decorators import StepUpRequiredMixin, step_up_exempt, step_up_required

RUNS: list[tuple[str, str, list[tuple[str, str]], list[str]]] = []


def _record(name: str, request: HttpRequest) -> HttpResponse:
    fields = [(key, value) for key, values in request.POST.lists() if key != "csrfmiddlewaretoken" for value in values]
    RUNS.append((name, request.method or "", fields, sorted(request.FILES)))
    return HttpResponse(f"{name} ran", content_type="text/plain")


def page(name: str) -> Callable[[HttpRequest], HttpResponse]:
    """A fresh, unmarked view function (each call makes a new one, so marking one marks no other)."""

    def view(request: HttpRequest) -> HttpResponse:
        return _record(name, request)

    view.__name__ = name.replace("-", "_")
    return view


def home(request: HttpRequest) -> HttpResponse:
    return HttpResponse("home page", content_type="text/plain")


@login_required
@require_POST
def change_password(request: HttpRequest) -> HttpResponse:
    """What Django's PasswordChangeView does: set the password, save, keep this session logged in."""
    request.user.set_password(request.POST["password"])
    request.user.save()
    update_session_auth_hash(request, request.user)  # type: ignore[arg-type]
    return HttpResponse("password changed", content_type="text/plain")


def state(request: HttpRequest) -> HttpResponse:
    """An open view that reports what ``request.emailotp`` says about this session."""
    step_up = request.emailotp  # type: ignore[attr-defined]
    expires_at = step_up.expires_at
    return JsonResponse(
        {
            "is_verified": step_up.is_verified(),
            "is_verified_60": step_up.is_verified(max_age=60),
            "is_verified_danger_zone": step_up.is_verified("danger_zone"),
            "expires_at": expires_at.isoformat() if expires_at is not None else None,
        }
    )


@step_up_required
def bare(request: HttpRequest) -> HttpResponse:
    """Bare decorator."""
    return _record("bare", request)


@step_up_required(max_age=60)
def strict(request: HttpRequest) -> HttpResponse:
    return _record("strict", request)


@step_up_required(purpose="danger_zone", single_use=True)
def danger(request: HttpRequest) -> HttpResponse:
    return _record("danger", request)


class MixinView(StepUpRequiredMixin, View):
    step_up_max_age = 120

    def get(self, request: HttpRequest) -> HttpResponse:
        return _record("mixin", request)


@step_up_required
async def async_view(request: HttpRequest) -> HttpResponse:
    RUNS.append(("async", request.method or "", [], []))
    return HttpResponse("async ran", content_type="text/plain")


@step_up_required
@step_up_required(purpose="danger_zone")
def stacked(request: HttpRequest) -> HttpResponse:
    """Two marks, two purposes: both must hold."""
    return _record("stacked", request)


@step_up_required
def transfer(request: HttpRequest) -> HttpResponse:
    """A protected form target: the POST that hits it without a grant is kept and replayed."""
    return _record("transfer", request)


def transfer_form(request: HttpRequest) -> HttpResponse:
    """An ordinary, unprotected page holding the form that posts to the protected view."""
    return HttpResponse(
        format_html(
            '<form method="post" action="/transfer/"><input type="hidden" name="csrfmiddlewaretoken" value="{}">'
            '<input name="amount"><button type="submit">Send</button></form>',
            get_token(request),
        )
    )


billing_patterns: list[URLPattern | URLResolver] = [
    path("invoice/", page("billing-invoice"), name="invoice"),
    path("receipt/", page("billing-receipt"), name="receipt"),
    path("eu/", include(([path("invoice/", page("billing-eu-invoice"), name="invoice")], "eu"))),
]

urlpatterns = [
    path("home/", home, name="home"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/password/", change_password, name="change-password"),
    path("plain/", login_required(page("plain")), name="plain"),
    path("state/", state, name="state"),
    path("bare/", bare, name="bare"),
    path("strict/", strict, name="strict"),
    path("danger/", danger, name="danger"),
    path("mixin/", MixinView.as_view(), name="mixin"),
    path("async/", async_view, name="async"),
    path("stacked/", stacked, name="stacked"),
    path("transfer/", transfer, name="transfer"),
    path("transfer/form/", transfer_form, name="transfer-form"),
    path("billing/", include((billing_patterns, "billing"))),
    path("invoice/", page("invoice"), name="invoice"),
    path("settings/profile/", page("settings-profile"), name="settings-profile"),
    path("settings/help/", page("settings-help"), name="settings-help"),
    path("settings/exempt/", step_up_exempt(page("settings-exempt")), name="settings-exempt"),
    path("settings/public/", login_not_required(page("settings-public")), name="settings-public"),
    path("otp/", include("django_emailotp.urls")),
]

# What the URL-pattern tests protect: a namespace (with an exemption), and a path prefix (with an exemption).
PROTECTED_URLS: list[str] = ["billing:*", "!billing:receipt", "^/settings/", "!^/settings/help/"]
