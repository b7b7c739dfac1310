"""Letting the middleware see a DRF view's request the way the view will (token authentication included)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest
from rest_framework.exceptions import APIException
from rest_framework.request import Request


def as_drf_request(request: HttpRequest, view_func: Callable[..., Any]) -> Request | None:
    """The request wrapped with the view's authenticators, authenticated; None when authentication fails."""
    view = view_func.cls(**getattr(view_func, "initkwargs", {}))  # type: ignore[attr-defined]
    drf_request = Request(request, authenticators=view.get_authenticators())
    # SessionAuthentication's CSRF check reads the form. Without parsers DRF would raise UnsupportedMediaType for
    # a JSON body, which looked like failed authentication and let the request past step-up. Give it Django's own
    # form data (what CsrfViewMiddleware reads; empty for JSON), leaving the body to the view's parsers.
    drf_request._data = drf_request._full_data = request.POST  # type: ignore[attr-defined]
    drf_request._files = request.FILES  # type: ignore[attr-defined]
    # DRF writes the user it finds through to the HttpRequest; left there, the view's SessionAuthentication would
    # take a token's user for a session (CSRF on token POSTs, request.auth lost). Put Django's own back.
    django_user = request.__dict__.get("user")
    try:
        drf_request.user  # noqa: B018 - runs the authenticators (and SessionAuthentication's CSRF check)
    except APIException:
        return None
    finally:
        if django_user is None:
            request.__dict__.pop("user", None)
        else:
            request.user = django_user
    return drf_request
