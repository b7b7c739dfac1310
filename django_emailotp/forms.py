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
