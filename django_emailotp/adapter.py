"""The hooks a project overrides to fit its user model: ``EMAIL_OTP_ADAPTER = "myproject.otp.Adapter"``.

Subclass :class:`EmailOTPAdapter` and override what differs. Services call :func:`get_adapter`; the instance is
cached and rebuilt when the setting changes (``override_settings`` included).
"""

from __future__ import annotations

import functools
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from django_emailotp.conf import app_settings


class EmailOTPAdapter:
    """Which user an address belongs to, whether a new address may get an account, and where codes go."""

    def get_user_by_email(self, email: str) -> AbstractBaseUser | None:
        """The one active user with this address (case-insensitive); None when there is none or more than one.

        An ambiguous address signs nobody in: a code must not pick one of several accounts.
        """
        model = get_user_model()
        field = model.get_email_field_name()
        users = list(model._default_manager.filter(**{f"{field}__iexact": email, "is_active": True})[:2])
        return users[0] if len(users) == 1 else None

    def can_create_account(self, email: str, request: Any) -> bool:
        """Whether a sign-in for an address without an account creates one once its code is confirmed."""
        return False

    def create_account(self, email: str, request: Any) -> AbstractBaseUser:
        """A new active user for ``email``, with an unusable password (only called when allowed)."""
        model = get_user_model()
        fields = {model.USERNAME_FIELD: email, model.get_email_field_name(): email}
        user = model(**fields)
        user.set_unusable_password()
        user.full_clean(exclude=["password"])
        user.save()
        return user

    def destination_for(self, user: AbstractBaseUser) -> str | None:
        """The address the user's codes go to (their email field by default)."""
        return getattr(user, user.get_email_field_name(), None) or None


@functools.cache
def _adapter_class(path: str) -> type[EmailOTPAdapter]:
    cls: type[EmailOTPAdapter] = import_string(path)
    return cls


def get_adapter() -> EmailOTPAdapter:
    """An instance of the class ``EMAIL_OTP_ADAPTER`` names (the import is cached)."""
    return _adapter_class(app_settings.ADAPTER)()


@receiver(setting_changed)
def _forget_adapter(*, setting: str, **kwargs: Any) -> None:
    if setting == "EMAIL_OTP_ADAPTER":
        _adapter_class.cache_clear()
