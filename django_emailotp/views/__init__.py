"""The pages under the ``emailotp`` namespace, one module per flow: ``step_up`` (prompt, send, verify, re-submit a
kept POST), ``backup`` (backup codes), ``login`` (the second factor at login), ``account_security`` (the sign-in codes
setting and remembered browsers), ``sign_in`` (passwordless sign-in) and ``email`` (address verification and change),
over ``common`` (what they share). Thin: the rules are in services.

Every view and helper is importable from here, as it was from the single ``views.py``. The backup-code and
remembered-browser modules are not called ``backup_codes`` and ``devices`` because those are view names.
"""

from __future__ import annotations

from django_emailotp.views.account_security import (
    DEVICES_FLOW,
    SECOND_FACTOR_FLOW,
    change_second_factor,
    devices,
    second_factor,
)
from django_emailotp.views.backup import backup_codes, generate_backup_codes, verify_backup_code
from django_emailotp.views.common import FLOW_SESSION_KEY, message_page, refused, safe_next, verify_error
from django_emailotp.views.email import EMAIL_SESSION_KEY, EmailVerifyView, email_change, email_send
from django_emailotp.views.login import AdminLoginView, LoginVerifyView, LoginView, login_backup_code, login_resend
from django_emailotp.views.sign_in import SIGN_IN_SESSION_KEY, SignInVerifyView, SignInView, sign_in_resend
from django_emailotp.views.step_up import StepUpView, continue_post, finish_step_up, send_code

__all__ = [
    "DEVICES_FLOW",
    "EMAIL_SESSION_KEY",
    "FLOW_SESSION_KEY",
    "SECOND_FACTOR_FLOW",
    "SIGN_IN_SESSION_KEY",
    "AdminLoginView",
    "EmailVerifyView",
    "LoginVerifyView",
    "LoginView",
    "SignInVerifyView",
    "SignInView",
    "StepUpView",
    "backup_codes",
    "change_second_factor",
    "continue_post",
    "devices",
    "email_change",
    "email_send",
    "finish_step_up",
    "generate_backup_codes",
    "login_backup_code",
    "login_resend",
    "message_page",
    "refused",
    "safe_next",
    "second_factor",
    "send_code",
    "sign_in_resend",
    "verify_backup_code",
    "verify_error",
]
