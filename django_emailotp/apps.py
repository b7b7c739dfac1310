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

        from django_emailotp import checks, project_checks  # noqa: F401  (register the system checks)
        from django_emailotp.receivers import revoke_grants_on_logout

        user_logged_out.connect(revoke_grants_on_logout, dispatch_uid="emailotp_revoke_grants_on_logout")
        self._connect_delivery_tracking()

    def _connect_delivery_tracking(self) -> None:
        """ESP webhooks (through anymail's tracking views) update delivery status, when the extra is installed."""
        from django_emailotp.delivery import anymail_installed

        if not anymail_installed():
            return
        from anymail.signals import tracking

        from django_emailotp.receivers import record_esp_tracking_event

        tracking.connect(record_esp_tracking_event, dispatch_uid="emailotp_record_esp_tracking_event")
