"""Enforces step-up on marked views and on ``EMAIL_OTP_PROTECTED_URLS``; exposes ``request.emailotp``.

Must come after ``AuthenticationMiddleware`` (system check emailotp.E020). Sync and async capable.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import reverse
from django.utils.deprecation import MiddlewareMixin

from django_emailotp import replay, services
from django_emailotp.conf import app_settings
from django_emailotp.decorators import is_exempt, requirement_of
from django_emailotp.models import StepUpGrant
from django_emailotp.purposes import STEP_UP
from django_emailotp.services import StepUpRequirement

APP_NAMESPACE = "emailotp"


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
    # Views Django marks as public (login_not_required: the admin's login page, for one) stay reachable.
    if getattr(view_func, "login_required", True) is False:
        return None
    return StepUpRequirement() if matches_protected_urls(request, patterns) else None


def wants_json(request: HttpRequest) -> bool:
    """API clients: they ask for JSON and not HTML, or authenticate with an Authorization header."""
    if "HTTP_AUTHORIZATION" in request.META:
        return True
    return request.accepts("application/json") and not request.accepts("text/html")


def step_up_url(purpose: str, next_url: str, replay_token: str | None = None) -> str:
    query = {"purpose": purpose, "next": next_url}
    if replay_token:
        query["replay"] = replay_token
    return f"{reverse('emailotp:verify')}?{urlencode(query)}"


class EmailOTPMiddleware(MiddlewareMixin):
    def process_request(self, request: HttpRequest) -> None:
        request.emailotp = StepUpState(request)  # type: ignore[attr-defined]

    def process_view(
        self, request: HttpRequest, view_func: Callable[..., Any], view_args: Any, view_kwargs: Any
    ) -> HttpResponse | None:
        requirement = requirement_for(request, view_func)
        if requirement is None:
            return None
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if services.use_step_up_grant(request, requirement):
            return None
        services.record_step_up_required(request, requirement)
        return step_up_response(request, requirement)


def step_up_response(request: HttpRequest, requirement: StepUpRequirement) -> HttpResponse:
    """401 JSON for API clients; for browsers a redirect to the prompt, keeping a POST for replay."""
    verify_url = step_up_url(requirement.purpose, request.get_full_path())
    if wants_json(request):
        response = JsonResponse(
            {
                "error": "step_up_required",
                "purpose": requirement.purpose,
                "max_age": requirement.window,
                "challenge_url": verify_url,
            },
            status=401,
        )
        response["Cache-Control"] = "no-store"
        return response
    if request.method == "POST":
        token = replay.save(request)
        return HttpResponseRedirect(step_up_url(requirement.purpose, request.path, token))
    return HttpResponseRedirect(verify_url)
