"""The OpenAPI 3 schema of this API alone, at ``<prefix>/schema/`` wherever the project includes the URLs."""

from __future__ import annotations

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


def api_patterns(prefix: str) -> list[Any]:
    from django_emailotp.api import urls

    routes = [pattern for pattern in urls.urlpatterns if getattr(pattern, "name", None) != "schema"]
    return [path(prefix, include((routes, urls.app_name)))]


class SchemaView(SpectacularAPIView):
    custom_settings = SCHEMA_SETTINGS
    # The schema endpoint itself is not an operation of the API (and drf-spectacular's deploy check would warn).
    schema = None

    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        route = request.resolver_match.route if request.resolver_match else ""
        self.patterns = api_patterns(route.removesuffix("schema/"))
        return super().get(request, *args, **kwargs)
