"""How a request without the step-up it needs is answered, for the middleware and the DRF permission alike.

API clients get a 401 JSON body (and, with a token-style credential, an RFC 9470 ``WWW-Authenticate``); browsers
are sent to the prompt, a POST kept for replay. Which view needs step-up, and whether a grant is fresh, is decided
by the callers (and ``services``); this module only shapes the answer, and needs nothing of DRF.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext_lazy as _

from django_emailotp import replay
from django_emailotp.services import StepUpRequirement

# An HTTP auth-scheme token (RFC 9110 token characters).
AUTH_SCHEME_RE = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,32}")
STEP_UP_NEEDED = _("Confirm it is you with a code sent to your email address first.")
# RFC 6750 limits error_description to printable ASCII without quotes or backslashes; kept untranslated.
STEP_UP_NEEDED_HEADER = "A fresh email one-time code is required"


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
