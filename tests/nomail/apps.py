from __future__ import annotations

from django.apps import AppConfig


class NoMailConfig(AppConfig):
    name = "tests.nomail"
    label = "nomail"
    default_auto_field = "django.db.models.BigAutoField"
