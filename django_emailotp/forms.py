from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from django_emailotp.crypto import MAX_RAW_CODE_LENGTH


class CodeForm(forms.Form):
    """One field for the emailed code. Normalising and checking it is the engine's job, not the form's."""

    code = forms.CharField(
        label=_("Code from the email"),
        max_length=MAX_RAW_CODE_LENGTH,
        strip=True,
        widget=forms.TextInput(
            attrs={
                "autocomplete": "one-time-code",
                "inputmode": "numeric",
                "autocapitalize": "off",
                "spellcheck": "false",
                "autofocus": True,
                "size": 12,
            }
        ),
        error_messages={"required": _("Enter the code from the email.")},
    )


class BackupCodeForm(forms.Form):
    """A backup code, as printed (``ABCDE-FGHJK``); case, spaces and hyphens do not matter."""

    backup_code = forms.CharField(
        label=_("Backup code"),
        max_length=64,
        strip=True,
        widget=forms.TextInput(attrs={"autocomplete": "off", "autocapitalize": "characters", "spellcheck": "false"}),
        error_messages={"required": _("Enter one of your backup codes.")},
    )


class LoginCodeForm(CodeForm):
    """The code at login, and "remember this browser" (offered only when ``EMAIL_OTP_TRUSTED_DEVICE_DAYS`` > 0)."""

    remember = forms.BooleanField(label=_("Remember this browser"), required=False)


class EmailForm(forms.Form):
    """One email address (sign-in, or the new address of an email change)."""

    email = forms.EmailField(
        label=_("Email address"),
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email", "autocapitalize": "off", "spellcheck": "false"}),
        error_messages={"required": _("Enter your email address."), "invalid": _("Enter a valid email address.")},
    )
