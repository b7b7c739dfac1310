"""System checks on the project around the app (texts in ``check_messages.MESSAGES``): views that need step-up while
``EmailOTPMiddleware`` is missing (W011), and DRF's HTTP Basic among the default authentication classes (W012)."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Tags, Warning, register

from django_emailotp.checks import MESSAGES, MIDDLEWARE_PATH


def _warning(check_id: str, obj: Any = None) -> Warning:
    text, hint = MESSAGES[check_id]
    return Warning(text, hint=hint, obj=obj, id=f"emailotp.{check_id}")


@register(Tags.security, Tags.urls)
def check_views_need_the_middleware(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Marked views hold without the middleware (they guard themselves), but lose request.emailotp and the prompt."""
    if MIDDLEWARE_PATH in (getattr(settings, "MIDDLEWARE", None) or []):
        return []
    marked = views_needing_step_up()
    if not marked:
        return []
    more = f" and {len(marked) - 3} more" if len(marked) > 3 else ""
    return [_warning("W011", ", ".join(marked[:3]) + more)]


def views_needing_step_up() -> list[str]:
    """The routes of the URLconf whose views are marked for step-up or behind the StepUpRequired permission."""
    from django.urls import URLResolver, get_resolver

    from django_emailotp.decorators import requirement_of
    from django_emailotp.middleware import step_up_permission_of

    found: list[str] = []

    def walk(entries: Sequence[Any], prefix: str) -> None:
        for entry in entries:
            route = prefix + str(entry.pattern)
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, route)
            elif requirement_of(entry.callback) is not None or step_up_permission_of(entry.callback) is not None:
                found.append(route)

    try:
        walk(get_resolver().url_patterns, "/")
    except Exception:  # a URLconf that does not load is for Django's own urls checks to report
        return []
    return found


@register(Tags.security)
def check_basic_authentication(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """DRF's default authentication classes, when DRF is installed: HTTP Basic gets round the login code."""
    if importlib.util.find_spec("rest_framework") is None:  # pragma: no cover - the no-extras subprocess test
        return []
    from rest_framework.authentication import BasicAuthentication
    from rest_framework.settings import api_settings

    try:
        classes = list(api_settings.DEFAULT_AUTHENTICATION_CLASSES)
    except ImportError:  # a class that does not import: DRF itself reports it on the first request
        return []
    if any(isinstance(cls, type) and issubclass(cls, BasicAuthentication) for cls in classes):
        return [_warning("W012")]
    return []
