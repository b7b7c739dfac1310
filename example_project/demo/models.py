from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models


def new_key() -> str:
    return "demo_" + secrets.token_urlsafe(24)


class ApiKey(models.Model):
    """A stand-in for something worth protecting: the demo's "Danger zone" rotates it."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="demo_api_key")
    key = models.CharField(max_length=64, default=new_key)
    rotated_at = models.DateTimeField(auto_now=True)
    rotation_reason = models.CharField(max_length=200, blank=True, default="")

    def __str__(self) -> str:
        return f"API key of {self.user}"

    @property
    def hint(self) -> str:
        return f"{self.key[:9]}…"
