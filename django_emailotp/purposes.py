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


# Built-in purposes with flows of their own; step-up serves "step_up" and the purposes a project registers.
OTHER_FLOWS = frozenset({LOGIN, SIGN_IN, VERIFY_EMAIL})


def is_step_up_purpose(purpose: object) -> bool:
    """Whether ``purpose`` may be confirmed on the step-up pages and API (and granted as step-up)."""
    return isinstance(purpose, str) and purpose not in OTHER_FLOWS and purpose in all_purposes()


class _StepUpPurposes:
    """A container of every step-up purpose, for ``verify_challenge(purpose=STEP_UP_PURPOSES)``."""

    def __contains__(self, purpose: object) -> bool:
        return is_step_up_purpose(purpose)


STEP_UP_PURPOSES = _StepUpPurposes()


def validate_purpose(purpose: str) -> str:
    purpose_label(purpose)
    return purpose
