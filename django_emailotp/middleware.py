"""Adds ``EMAIL_OTP_PROTECTED_URLS`` and ``request.emailotp``; checks marked views before any other view
middleware runs (their own guard then does not check again).

Marked views are safe without it: ``@step_up_required``, ``StepUpRequiredMixin`` and ``StepUpRequired`` demand a
grant by themselves. Must come after ``AuthenticationMiddleware`` (system check emailotp.E020). Sync and async
capable.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils.deprecation import MiddlewareMixin

from django_emailotp import services
from django_emailotp.conf import app_settings
from django_emailotp.decorators import is_exempt, requirement_of
from django_emailotp.models import StepUpGrant
from django_emailotp.purposes import STEP_UP
from django_emailotp.services import StepUpRequirement
from django_emailotp.step_up import demand, is_drf_view, is_navigation

APP_NAMESPACE = "emailotp"


def step_up_permission_of(view_func: Callable[..., Any]) -> StepUpRequirement | None:
    """The requirement of a DRF view's step-up permission class (``StepUpRequired``), or None.

    Recognised by the ``step_up_requirement()`` classmethod it exposes rather than by its class: the permission
    imports what it shares with this module from ``step_up``, and neither imports the other.
    """
    if not is_drf_view(view_func):
        return None
    initkwargs = getattr(view_func, "initkwargs", {})
    permissions: Any = initkwargs.get("permission_classes", view_func.cls.permission_classes)  # type: ignore[attr-defined]
    for permission in permissions:
        step_up_requirement = getattr(permission, "step_up_requirement", None)
        if isinstance(permission, type) and callable(step_up_requirement):
            requirement: StepUpRequirement = step_up_requirement()
            return requirement
    return None


class StepUpState:
    """``request.emailotp``: what the current request's session has confirmed. Queries lazily, once per purpose."""

    def __init__(self, request: HttpRequest) -> None:
        self._request = request
        self._grants: dict[tuple[str, int | None], StepUpGrant | None] = {}

    def grant(self, purpose: str = STEP_UP, max_age: int | None = None) -> StepUpGrant | None:
        key = (purpose, max_age)
        if key not in self._grants:
            requirement = StepUpRequirement(purpose=purpose, max_age=max_age)
            self._grants[key] = services.find_step_up_grant(self._request, requirement)
        return self._grants[key]

    def is_verified(self, purpose: str = STEP_UP, max_age: int | None = None) -> bool:
        """Whether the session holds a fresh grant for ``purpose`` (no older than ``max_age`` seconds)."""
        return self.grant(purpose, max_age) is not None

    @property
    def expires_at(self) -> datetime | None:
        """When the default ``step_up`` grant ends, or None without one."""
        grant = self.grant()
        return grant.expires_at if grant is not None else None


@lru_cache(maxsize=16)
def _compile(patterns: tuple[str, ...]) -> tuple[tuple[bool, bool, Any], ...]:
    """(exempting, is_regex, matcher) per pattern: ``^...`` is a path regex, anything else a URL-name glob."""
    compiled = []
    for pattern in patterns:
        exempting = pattern.startswith("!")
        body = pattern[1:] if exempting else pattern
        compiled.append((exempting, True, re.compile(body)) if body.startswith("^") else (exempting, False, body))
    return tuple(compiled)


def matches_protected_urls(request: HttpRequest, patterns: Sequence[str]) -> bool:
    """Whether the request matches ``patterns`` (last match wins, so ``!`` entries exempt what came before)."""
    match = getattr(request, "resolver_match", None)
    view_name = match.view_name if match is not None else ""
    protected = False
    for exempting, is_regex, matcher in _compile(tuple(patterns)):
        hit = (
            bool(matcher.match(request.path_info)) if is_regex else bool(view_name and fnmatchcase(view_name, matcher))
        )
        if hit:
            protected = not exempting
    return protected


def requirement_for(request: HttpRequest, view_func: Callable[..., Any]) -> StepUpRequirement | None:
    """The step-up the view needs: its own mark first, then the URL patterns; None when it needs none."""
    requirement = requirement_of(view_func)
    if requirement is not None:
        return requirement
    patterns = app_settings.PROTECTED_URLS
    if not patterns or is_exempt(view_func):
        return None
    match = getattr(request, "resolver_match", None)
    if match is not None and APP_NAMESPACE in match.namespaces:
        return None
    # The REST API's own endpoints (wherever and under whatever namespace they are included): protecting them
    # with a pattern such as r"^/api/" would ask for step-up on the very endpoint that grants it.
    if getattr(getattr(view_func, "cls", None), "__module__", "").startswith("django_emailotp.api."):
        return None
    # Views Django marks as public (login_not_required: the admin's login page, for one) stay reachable. DRF marks
    # every view so, because it authenticates inside the view: that says nothing about DRF views being public.
    if getattr(view_func, "login_required", True) is False and not is_drf_view(view_func):
        return None
    return StepUpRequirement() if matches_protected_urls(request, patterns) else None


class EmailOTPMiddleware(MiddlewareMixin):
    def process_request(self, request: HttpRequest) -> None:
        request.emailotp = StepUpState(request)  # type: ignore[attr-defined]

    def process_view(
        self, request: HttpRequest, view_func: Callable[..., Any], view_args: Any, view_kwargs: Any
    ) -> HttpResponse | None:
        requirement = requirement_for(request, view_func)
        # A browser navigating to a DRF view behind the StepUpRequired permission gets the HTML prompt too; the
        # permission still decides (and uses up a single-use grant) when the view runs.
        if requirement is None and is_navigation(request):
            navigation = step_up_permission_of(view_func)
            return demand(request, view_func, navigation, use_grant=False) if navigation is not None else None
        return demand(request, view_func, requirement) if requirement is not None else None
