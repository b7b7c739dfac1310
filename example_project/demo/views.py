"""The example site's pages: a home page and a page that issues and verifies a code through the engine."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from django_emailotp import services
from django_emailotp.decorators import step_up_required
from django_emailotp.delivery import mask_address
from django_emailotp.exceptions import EmailOTPError, ResendCooldown
from example_project.demo.models import ApiKey

SESSION_KEY = "demo_challenge_id"


class CodeForm(forms.Form):
    code = forms.CharField(
        label="Code from your email",
        max_length=64,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "demo/home.html")


@never_cache
@login_required
@sensitive_post_parameters("code")
def try_code(request: HttpRequest) -> HttpResponse:
    form = CodeForm(request.POST or None)
    challenge_id = request.session.get(SESSION_KEY)
    if request.method == "POST" and challenge_id and form.is_valid():
        result = services.verify_challenge(challenge_id, form.cleaned_data["code"], request=request, purpose="step_up")
        if result.success:
            del request.session[SESSION_KEY]
            messages.success(request, "Code accepted: the engine verified it and used it up.")
            return redirect("try-code")
        form.add_error("code", f"Not accepted ({result.reason}). Attempts left: {result.attempts_remaining}.")
    return render(
        request,
        "demo/try_code.html",
        {"form": form, "challenge_id": challenge_id, "masked_email": mask_address(request.user.email)},
    )


@login_required
@require_POST
def send_code(request: HttpRequest) -> HttpResponse:
    try:
        challenge = services.issue_challenge(user=request.user, purpose="step_up", request=request)
    except ResendCooldown as exc:
        messages.error(request, f"Please wait {exc.retry_after} seconds before asking for another code.")
    except EmailOTPError as exc:
        messages.error(request, f"The code could not be sent: {exc}")
    else:
        request.session[SESSION_KEY] = str(challenge.pk)
        messages.info(request, "Code sent. With the default settings it is printed in the terminal running the site.")
    return redirect("try-code")


class RotateKeyForm(forms.Form):
    reason = forms.CharField(label="Why are you rotating the key?", max_length=200)


@login_required
@step_up_required
def security(request: HttpRequest) -> HttpResponse:
    """Security settings: needs a step-up within EMAIL_OTP_STEP_UP_MAX_AGE."""
    api_key, _ = ApiKey.objects.get_or_create(user=request.user)
    return render(
        request,
        "demo/security.html",
        {"api_key": api_key, "form": RotateKeyForm(), "step_up_expires_at": request.emailotp.expires_at},
    )


@login_required
@require_POST
@step_up_required(
    purpose="danger_zone",
    max_age=120,
    single_use=True,
    action=lambda request: f"Rotate your API key (reason: {request.POST.get('reason', '')[:200]})",
)
def rotate_key(request: HttpRequest) -> HttpResponse:
    """Danger zone: a single-use confirmation for exactly this one POST (kept and replayed across the prompt).

    The code is bound to the action: the email names it, and a form posted with another reason is prompted again.
    """
    form = RotateKeyForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give a reason for rotating the key.")
        return redirect("security")
    api_key, _ = ApiKey.objects.get_or_create(user=request.user)
    api_key.key = ApiKey._meta.get_field("key").get_default()
    api_key.rotation_reason = form.cleaned_data["reason"]
    api_key.save()
    messages.success(request, f"API key rotated (reason: {api_key.rotation_reason}). New key: {api_key.hint}")
    return redirect("security")
