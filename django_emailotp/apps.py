from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class EmailOTPConfig(AppConfig):
    name = "django_emailotp"
    label = "emailotp"
    verbose_name = _("Email one-time codes")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_out

        from django_emailotp import checks  # noqa: F401  (registers the system checks)
        from django_emailotp.receivers import revoke_grants_on_logout

        user_logged_out.connect(revoke_grants_on_logout, dispatch_uid="emailotp_revoke_grants_on_logout")
