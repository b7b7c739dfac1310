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
from django.urls import NoReverseMatch, reverse
from django.utils.deprecation import MiddlewareMixin
from django.utils.translation import gettext_lazy as _

from django_emailotp import replay, services
from django_emailotp.conf import app_settings
from django_emailotp.decorators import is_exempt, requirement_of
from django_emailotp.models import StepUpGrant
from django_emailotp.purposes import STEP_UP
from django_emailotp.services import StepUpRequirement

APP_NAMESPACE = "emailotp"
# An HTTP auth-scheme token (RFC 9110 token characters).
AUTH_SCHEME_RE = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,32}")
SIGN_IN_FIRST = _("Sign in first.")
STEP_UP_NEEDED = _("Confirm it is you with a code sent to your email address first.")
# RFC 6750 limits error_description to printable ASCII without quotes or backslashes; kept untranslated.
STEP_UP_NEEDED_HEADER = "A fresh email one-time code is required"


def _is_drf_view(view_func: Callable[..., Any]) -> bool:
    cls = getattr(view_func, "cls", None)
    return cls is not None and any(base.__module__.startswith("rest_framework.") for base in cls.__mro__)


def step_up_permission_of(view_func: Callable[..., Any]) -> StepUpRequirement | None:
    """The requirement of a DRF view's ``StepUpRequired`` permission class, or None."""
    if not _is_drf_view(view_func):
        return None
    from django_emailotp.api.permissions import StepUpRequired

    initkwargs = getattr(view_func, "initkwargs", {})
    permissions: Any = initkwargs.get("permission_classes", view_func.cls.permission_classes)  # type: ignore[attr-defined]
    for permission in permissions:
        if isinstance(permission, type) and issubclass(permission, StepUpRequired):
            return StepUpRequirement(permission.purpose, permission.max_age, permission.single_use)
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
    if getattr(view_func, "login_required", True) is False and not _is_drf_view(view_func):
        return None
    return StepUpRequirement() if matches_protected_urls(request, patterns) else None


def wants_json(request: HttpRequest) -> bool:
    """API clients: they ask for JSON and not HTML, or authenticate with an Authorization header."""
    if "HTTP_AUTHORIZATION" in request.META:
        return True
    return request.accepts("application/json") and not request.accepts("text/html")


def is_navigation(request: HttpRequest) -> bool:
    """A browser loading a page: GET, asking for HTML by name (fetch() and API clients send */* or JSON)."""
    accept = request.META.get("HTTP_ACCEPT", "")
    return request.method in ("GET", "HEAD") and "text/html" in accept and not wants_json(request)


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
        # A browser navigating to a DRF view behind the StepUpRequired permission gets the HTML prompt too; the
        # permission still decides (and uses up a single-use grant) when the view runs.
        navigation = None
        if requirement is None and is_navigation(request):
            requirement = navigation = step_up_permission_of(view_func)
        if requirement is None:
            return None
        subject: Any = request
        if _is_drf_view(view_func):
            # DRF authenticates inside the view (tokens, ...): look at the request the way the view will.
            from django_emailotp.api.integration import as_drf_request

            subject = as_drf_request(request, view_func)
            if subject is None:
                return None  # authentication failed: the view answers with its own 401/403
        if not subject.user.is_authenticated:
            if subject is not request and wants_json(request):
                # Step-up implies a signed-in user, whatever the DRF view's own permission classes allow.
                return JsonResponse({"error": "not_authenticated", "message": str(SIGN_IN_FIRST)}, status=401)
            return redirect_to_login(request.get_full_path())
        if navigation is not None and services.find_step_up_grant(subject, requirement) is not None:
            return None
        if navigation is None and services.use_step_up_grant(subject, requirement):
            return None
        services.record_step_up_required(subject, requirement)
        return step_up_response(subject, requirement)


def challenge_url(requirement: StepUpRequirement, next_url: str, *, api: bool) -> str:
    """Where to start step-up: the API's challenge endpoint for API clients when it is installed, else the page."""
    if api:
        try:
            return reverse("emailotp-api:challenge-create")
        except NoReverseMatch:
            pass
    return step_up_url(requirement.purpose, next_url)


def step_up_challenge(
    request: HttpRequest, requirement: StepUpRequirement, *, api: bool
) -> tuple[dict[str, Any], str | None]:
    """The 401 body, and the RFC 9470 WWW-Authenticate value when the client sent a token-style credential."""
    body = {
        "error": "step_up_required",
        "message": str(STEP_UP_NEEDED),
        "purpose": requirement.purpose,
        "max_age": requirement.window,
        "challenge_url": challenge_url(requirement, request.get_full_path(), api=api),
    }
    scheme = request.META.get("HTTP_AUTHORIZATION", "").split(" ", 1)[0]
    if not scheme or scheme.lower() == "basic":
        return body, None
    if not AUTH_SCHEME_RE.fullmatch(scheme):  # never echo arbitrary client text into a header
        scheme = "Bearer"
    header = (
        f'{scheme} error="insufficient_user_authentication", '
        f'error_description="{STEP_UP_NEEDED_HEADER}", max_age="{requirement.window}"'
    )
    return body, header


def step_up_response(request: HttpRequest, requirement: StepUpRequirement) -> HttpResponse:
    """401 JSON for API clients; for browsers a redirect to the prompt, keeping a POST for replay."""
    if wants_json(request):
        body, header = step_up_challenge(request, requirement, api=True)
        response = JsonResponse(body, status=401)
        response["Cache-Control"] = "no-store"
        if header:
            response["WWW-Authenticate"] = header
        return response
    if request.method == "POST":
        token = replay.save(request, requirement.action_for(request))
        return HttpResponseRedirect(step_up_url(requirement.purpose, request.path, token))
    return HttpResponseRedirect(step_up_url(requirement.purpose, request.get_full_path()))
