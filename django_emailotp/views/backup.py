"""Backup codes on the pages: stepping up with one instead of an emailed code, how many are left, and a new set."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from django_emailotp import services, texts
from django_emailotp.conf import app_settings
from django_emailotp.decorators import step_up_required
from django_emailotp.exceptions import LimiterUnavailable
from django_emailotp.forms import BackupCodeForm, CodeForm
from django_emailotp.purposes import STEP_UP
from django_emailotp.views.common import flow_state, refused, with_retry_after
from django_emailotp.views.step_up import StepUpView, bad_purpose, finish_step_up, step_up_purpose


def answer_backup_code(
    request: HttpRequest,
    form: BackupCodeForm,
    *,
    use: Callable[[str], services.BackupCodeResult],
    finish: Callable[[], HttpResponse],
    page: Callable[[int], HttpResponse],
) -> HttpResponse:
    """A backup code POSTed to a flow (step-up or login): a right one finishes the flow, a wrong one shows the
    flow's page again with the error (429 with Retry-After while the user's backup-code limit is spent, else 400)."""
    if form.is_valid():
        try:
            result = use(form.cleaned_data["backup_code"])
        except LimiterUnavailable as exc:
            return refused(request, exc)
        if result.success:
            return finish()
        form.add_error("backup_code", texts.BACKUP_CODE_ERRORS[str(result.reason)])
        if result.reason == services.BackupCodeReason.RATE_LIMITED:
            return with_retry_after(page(429), result.retry_after)
    return page(400)


@never_cache
@login_required
@require_POST
@sensitive_post_parameters("backup_code")
def verify_backup_code(request: HttpRequest) -> HttpResponse:
    """Step up with a backup code instead of an emailed one."""
    purpose = step_up_purpose(request.POST.get("purpose", STEP_UP))
    if purpose is None:
        return bad_purpose()
    form = BackupCodeForm(request.POST)
    return answer_backup_code(
        request,
        form,
        use=lambda code: services.complete_step_up_with_backup_code(request, code, purpose=purpose),
        finish=lambda: finish_step_up(request, purpose),
        page=lambda status: StepUpView().render(
            request, purpose, flow_state(request, purpose), CodeForm(), status=status, backup_form=form
        ),
    )


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
