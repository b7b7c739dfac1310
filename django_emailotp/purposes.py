"""Named purposes a challenge can be issued for. Projects add their own with ``EMAIL_OTP_PURPOSES``."""

from __future__ import annotations

import re

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from django_emailotp.conf import app_settings
from django_emailotp.exceptions import UnknownPurpose

StrOrPromise = str | Promise

STEP_UP = "step_up"
LOGIN = "login"
SIGN_IN = "sign_in"
VERIFY_EMAIL = "verify_email"

BUILTIN_PURPOSES: dict[str, StrOrPromise] = {
    STEP_UP: _("confirm it is you"),
    LOGIN: _("finish signing in"),
    SIGN_IN: _("sign in"),
    VERIFY_EMAIL: _("verify your email address"),
}

PURPOSE_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def all_purposes() -> dict[str, StrOrPromise]:
    """Built-in purposes and the project's, name -> human label."""
    return {**BUILTIN_PURPOSES, **app_settings.PURPOSES}


def purpose_label(purpose: str) -> str:
    try:
        return str(all_purposes()[purpose])
    except KeyError:
        raise UnknownPurpose(f"Unknown purpose {purpose!r}; register it in EMAIL_OTP_PURPOSES.") from None


def validate_purpose(purpose: str) -> str:
    purpose_label(purpose)
    return purpose
