"""The OpenAPI 3 schema of this API alone, at ``<prefix>/schema/`` wherever the project includes the URLs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from django_emailotp import __version__

SCHEMA_SETTINGS = {
    "TITLE": "django-emailotp API",
    "DESCRIPTION": "Email one-time codes: send, verify, resend, and step-up status. Errors are "
    '{"error": code, "message": text}; see the API guide for every code.',
    "VERSION": __version__,
}


class SchemaView(SpectacularAPIView):
    """The schema of ``routes`` under ``namespace``: the URLconf hands them in (``as_view(routes=...)``)."""

    custom_settings = SCHEMA_SETTINGS
    # The schema endpoint itself is not an operation of the API (and drf-spectacular's deploy check would warn).
    schema = None
    routes: Sequence[Any] = ()
    namespace: str = ""

    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        route = request.resolver_match.route if request.resolver_match else ""
        self.patterns = [path(route.removesuffix("schema/"), include((list(self.routes), self.namespace)))]
        return super().get(request, *args, **kwargs)
