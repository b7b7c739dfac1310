"""The account-security pages of the login flow: the user's sign-in codes setting (turning it on or off needs a
fresh step-up) and the remembered browsers, each of which can be forgotten."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from django_emailotp import services, texts
from django_emailotp.conf import app_settings
from django_emailotp.decorators import step_up_required
from django_emailotp.views.common import flow_state, make_notice, session_changed

SECOND_FACTOR_FLOW = "second_factor"
DEVICES_FLOW = "devices"


@never_cache
@login_required
def second_factor(request: HttpRequest) -> HttpResponse:
    """The user's sign-in codes setting: on or off (a choice only under the "optional" policy)."""
    notice = flow_state(request, SECOND_FACTOR_FLOW).pop("notice", None)
    session_changed(request)
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
    flow_state(request, SECOND_FACTOR_FLOW)["notice"] = make_notice(
        "info", texts.SECOND_FACTOR_ON if enabled else texts.SECOND_FACTOR_OFF
    )
    session_changed(request)
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
            flow_state(request, DEVICES_FLOW)["notice"] = make_notice("info", texts.DEVICE_FORGOTTEN)
            session_changed(request)
            if device.is_current:  # type: ignore[attr-defined]
                response.delete_cookie(app_settings.TRUSTED_DEVICE_COOKIE, samesite="Lax")
        return response
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD", "POST"])
    notice = flow_state(request, DEVICES_FLOW).pop("notice", None)
    session_changed(request)
    context = {
        "notice": notice,
        "devices": services.trusted_devices(request.user, request),
        "remember_days": app_settings.TRUSTED_DEVICE_DAYS,
    }
    return render(request, "django_emailotp/devices.html", context)
