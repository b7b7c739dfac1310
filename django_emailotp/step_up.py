"""The one step-up decision for a request to a view that needs it, and how a refusal is answered: for the
decorator, the mixin, the middleware and the DRF permission alike.

:func:`demand` lets the request through with a fresh grant (using up a single-use one) or answers for it: API
clients get a 401 JSON body (and, with a token-style credential, an RFC 9470 ``WWW-Authenticate``); browsers are
sent to the prompt, a POST kept for replay. Which view needs which step-up is decided by the callers, whether a
grant is fresh by ``services``. DRF is imported only for a DRF view.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext_lazy as _

from django_emailotp import replay, services
from django_emailotp.services import StepUpRequirement

# An HTTP auth-scheme token (RFC 9110 token characters).
AUTH_SCHEME_RE = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,32}")
STEP_UP_NEEDED = _("Confirm it is you with a code sent to your email address first.")
# RFC 6750 limits error_description to printable ASCII without quotes or backslashes; kept untranslated.
STEP_UP_NEEDED_HEADER = "A fresh email one-time code is required"
SIGN_IN_FIRST = _("Sign in first.")
# The requirements this request has already passed (the middleware checks before the view's own guard would).
PASSED_ATTR = "_emailotp_step_up_passed"


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


def is_drf_view(view_func: Callable[..., Any]) -> bool:
    cls = getattr(view_func, "cls", None)
    return cls is not None and any(base.__module__.startswith("rest_framework.") for base in cls.__mro__)


def has_passed(request: HttpRequest, requirement: StepUpRequirement) -> bool:
    """Whether this request already passed ``requirement`` (so a second guard must not use a grant again)."""
    return any(passed is requirement for passed in getattr(request, PASSED_ATTR, ()))


def demand(
    request: HttpRequest, view_func: Callable[..., Any], requirement: StepUpRequirement, *, use_grant: bool = True
) -> HttpResponse | None:
    """None when the request may reach ``view_func``, which needs ``requirement``; else the answer for it.

    With a fresh grant the request passes (a single-use grant is used up, a sliding one renewed; ``use_grant=False``
    only looks). Anonymous users go to the login page (API clients of a DRF view get a 401). Otherwise the refusal is
    audited and answered by :func:`step_up_response`. A DRF view's request is looked at the way the view will see
    it (token authentication included); when its authentication fails, the view answers with its own 401/403.
    """
    subject: Any = request
    if is_drf_view(view_func):
        from django_emailotp.api.integration import as_drf_request

        subject = as_drf_request(request, view_func)
        if subject is None:  # the view's own authentication refuses this request, with DRF's 401 or 403
            return None
    if not subject.user.is_authenticated:
        if subject is not request and wants_json(request):
            # Step-up implies a signed-in user, whatever the DRF view's own permission classes allow.
            return JsonResponse({"error": "not_authenticated", "message": str(SIGN_IN_FIRST)}, status=401)
        return redirect_to_login(request.get_full_path())
    if not use_grant:
        if services.find_step_up_grant(subject, requirement) is not None:
            return None
    elif services.use_step_up_grant(subject, requirement):
        setattr(request, PASSED_ATTR, (*getattr(request, PASSED_ATTR, ()), requirement))
        return None
    services.record_step_up_required(subject, requirement)
    return step_up_response(subject, requirement)
