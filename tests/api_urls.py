"""A URLconf for the API tests: the API itself, the HTML step-up pages, and DRF views protected in every supported way.

Every protected view appends ``(name, username, credential)`` to :data:`view_runs`, so a test can tell exactly how
often a view body ran, and for whom.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, JsonResponse
from django.middleware.csrf import get_token
from django.urls import include, path
from rest_framework import exceptions
from rest_framework.authentication import (
    BaseAuthentication,
    BasicAuthentication,
    SessionAuthentication,
    TokenAuthentication,
)
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from django_emailotp.api import views as api_views
from django_emailotp.api.permissions import StepUpRequired
from django_emailotp.decorators import step_up_required

view_runs: list[tuple[str, str, str]] = []
# Bearer keys -> username: several credentials for one user at once (DRF's Token allows one per user).
BEARER_KEYS: dict[str, str] = {}


class BearerKeyAuthentication(BaseAuthentication):
    """``Authorization: Bearer <key>`` for the keys in :data:`BEARER_KEYS`; ``request.auth`` is the key."""

    def authenticate(self, request: Request) -> tuple[Any, str] | None:
        scheme, _, key = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme != "Bearer":
            return None
        if key not in BEARER_KEYS:
            raise exceptions.AuthenticationFailed("Invalid key.")
        return get_user_model().objects.get(username=BEARER_KEYS[key]), key

    def authenticate_header(self, request: Request) -> str:
        return "Bearer"


AUTHENTICATION = (SessionAuthentication, TokenAuthentication, BearerKeyAuthentication)


class DangerZoneStepUp(StepUpRequired):
    """A subclass: a project purpose, and the grant allows exactly one request."""

    purpose = "danger_zone"
    single_use = True


class Recorded(APIView):
    authentication_classes = AUTHENTICATION
    permission_classes: tuple[Any, ...] = (IsAuthenticated,)
    name = "plain"

    def get(self, request: Request) -> Response:
        return self.ran(request)

    def post(self, request: Request) -> Response:
        return self.ran(request)

    def ran(self, request: Request) -> Response:
        credential = "session" if request.auth is None else "token"
        view_runs.append((self.name, request.user.get_username(), credential))
        return Response({"view": self.name, "user": request.user.get_username()})


class Secret(Recorded):
    permission_classes = (IsAuthenticated, StepUpRequired)
    name = "secret"


class Strict(Recorded):
    permission_classes = (IsAuthenticated, StepUpRequired.with_options(max_age=60))
    name = "strict"


class Transfer(Recorded):
    permission_classes = (IsAuthenticated, StepUpRequired.with_options(single_use=True))
    name = "transfer"


class Danger(Recorded):
    permission_classes = (IsAuthenticated, DangerZoneStepUp)
    name = "danger"


class Decorated(Recorded):
    name = "decorated"


class Billing(Recorded):
    name = "billing"


class BasicSecret(Secret):
    """``curl -u user:password``: DRF's BasicAuthentication (in DRF's default authentication classes)."""

    authentication_classes = (BasicAuthentication,)
    name = "basic-secret"


def csrf(request: HttpRequest) -> JsonResponse:
    """What an SPA calls first: sets the CSRF cookie and returns the token for the X-CSRFToken header."""
    return JsonResponse({"csrf_token": get_token(request)})


# The API again, for clients of any authentication class a project adds (here: the Bearer keys).
bearer_api = [
    path("challenges/", api_views.ChallengeCreateView.as_view(authentication_classes=AUTHENTICATION)),
    path(
        "challenges/<str:challenge_id>/verify/",
        api_views.ChallengeVerifyView.as_view(authentication_classes=AUTHENTICATION),
    ),
    path("step-up/", api_views.StepUpStatusView.as_view(authentication_classes=AUTHENTICATION)),
]

# And for clients that send a username and password with every request (HTTP Basic).
BASIC = (BasicAuthentication,)
basic_api = [
    path("challenges/", api_views.ChallengeCreateView.as_view(authentication_classes=BASIC)),
    path("challenges/<str:challenge_id>/verify/", api_views.ChallengeVerifyView.as_view(authentication_classes=BASIC)),
    path("challenges/<str:challenge_id>/resend/", api_views.ChallengeResendView.as_view(authentication_classes=BASIC)),
    path("step-up/", api_views.StepUpStatusView.as_view(authentication_classes=BASIC)),
]

urlpatterns = [
    path("api/bearer-otp/", include((bearer_api, "bearer-otp"))),
    path("api/basic-otp/", include((basic_api, "basic-otp"))),
    path("api/basic-secret/", BasicSecret.as_view(), name="api-basic-secret"),
    path(
        "api/basic-decorated/",
        step_up_required(Decorated.as_view(authentication_classes=BASIC), single_use=True),
        name="api-basic-decorated",
    ),
    path("csrf/", csrf, name="csrf"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("otp/", include("django_emailotp.urls")),
    path("api/otp/", include("django_emailotp.api.urls")),
    path("api/plain/", Recorded.as_view(), name="api-plain"),
    path("api/secret/", Secret.as_view(), name="api-secret"),
    path("api/strict/", Strict.as_view(), name="api-strict"),
    path("api/transfer/", Transfer.as_view(), name="api-transfer"),
    path("api/danger/", Danger.as_view(), name="api-danger"),
    path("api/decorated/", step_up_required(Decorated.as_view()), name="api-decorated"),
    path("api/decorated-once/", step_up_required(Decorated.as_view(), single_use=True), name="api-decorated-once"),
    path("api/billing/", Billing.as_view(), name="api-billing"),
]

# What the EMAIL_OTP_PROTECTED_URLS tests protect: a DRF view by path.
PROTECTED_URLS = ["^/api/billing/"]
