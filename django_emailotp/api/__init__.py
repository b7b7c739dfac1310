"""The REST API (Django REST framework): ``path("api/otp/", include("django_emailotp.api.urls"))``."""

from __future__ import annotations

from django_emailotp.exceptions import MissingDependency

try:
    import rest_framework  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by the no-extras test in a subprocess
    raise MissingDependency("djangorestframework", "api", "The REST API (django_emailotp.api)") from exc
