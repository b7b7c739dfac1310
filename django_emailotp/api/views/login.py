"""The second factor at login: the password, then (when EMAIL_OTP_LOGIN_POLICY asks) a code or a backup code.

The pending login lives in the session (services.begin_login), so these endpoints are for cookie clients,
CSRF-protected like Django's LoginView even while anonymous; only services.complete_login* call login().
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth import login as django_login
from django.http import HttpRequest
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.debug import sensitive_post_parameters
from drf_spectacular.utils import extend_schema_view
from rest_framework import status
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import SAFE_METHODS, AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer

from django_emailotp import services
from django_emailotp.api import docs
from django_emailotp.api.errors import ErrorCode, backup_code_failure, error_body, refusal, verification_failure
from django_emailotp.api.serializers import (
    CodeSerializer,
    LoggedInSerializer,
    LoginBackupCodeSerializer,
    LoginChallengeSerializer,
    LoginSerializer,
)
from django_emailotp.api.views.base import EmailOTPAPIView, issue_response, read_code, validated, with_sign_in_token
from django_emailotp.conf import app_settings
from django_emailotp.exceptions import LimiterUnavailable
from django_emailotp.texts import INVALID_CREDENTIALS


@sensitive_post_parameters("password")
def _mark_password_sensitive(request: Any) -> None:
    """Marks the password as sensitive in error reports, like Django's LoginView does."""


def logged_in(user: Any) -> Response:
    return Response(LoggedInSerializer(with_sign_in_token({"logged_in": True}, user)).data)


class SessionLoginAPIView(EmailOTPAPIView):
    """Open to anonymous clients, but CSRF-checked for them too (DRF checks CSRF only for signed-in sessions)."""

    permission_classes = (AllowAny,)

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        return ensure_csrf_cookie(super().as_view(**initkwargs))

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        if request.method not in SAFE_METHODS and request.auth is None:
            SessionAuthentication().enforce_csrf(request)


@extend_schema_view(get=docs.LOGIN_STATUS, post=docs.LOGIN)
class LoginView(SessionLoginAPIView):
    def get(self, request: Request) -> Response:
        return Response({"logged_in": bool(request.user and request.user.is_authenticated)})

    def post(self, request: Request) -> Response:
        _mark_password_sensitive(request._request)
        data = validated(request, LoginSerializer)
        http_request = request._request
        credentials = {get_user_model().USERNAME_FIELD: data["username"], "password": data["password"]}
        user = authenticate(http_request, **credentials)
        if user is None:
            return Response(error_body(ErrorCode.INVALID_CREDENTIALS, INVALID_CREDENTIALS), status=400)
        if not services.second_factor_needed(http_request, user):
            django_login(http_request, user)
            return logged_in(user)
        backend = getattr(user, "backend", None) or settings.AUTHENTICATION_BACKENDS[0]
        response = issue_response(lambda: services.begin_login(http_request, user, backend))
        if response.status_code == status.HTTP_202_ACCEPTED:
            response.data = LoginChallengeSerializer({**response.data, "second_factor_required": True}).data
        return response


# Finishing the session's pending login with something the user types, which ``finish`` checks. No docstring: the
# operations' OpenAPI description is SessionLoginAPIView's (drf-spectacular reads the nearest one in the MRO).
class PendingLoginView(SessionLoginAPIView):
    code_serializer: type[Serializer]

    def finish(self, request: HttpRequest, code: str) -> Any:
        raise NotImplementedError

    def refused(self, result: Any) -> Response:
        raise NotImplementedError

    def post(self, request: Request) -> Response:
        code = read_code(request, self.code_serializer)["code"]
        try:
            result = self.finish(request._request, code)
        except LimiterUnavailable as exc:
            return refusal(exc)
        if not result.success:
            return self.refused(result)
        return logged_in(request._request.user)


@extend_schema_view(post=docs.LOGIN_VERIFY)
class LoginVerifyView(PendingLoginView):
    code_serializer = CodeSerializer

    def finish(self, request: HttpRequest, code: str) -> services.VerificationResult:
        return services.complete_login(request, code)

    def refused(self, result: services.VerificationResult) -> Response:
        return verification_failure(result, app_settings.MAX_ATTEMPTS)


@extend_schema_view(post=docs.LOGIN_BACKUP_CODE)
class LoginBackupCodeView(PendingLoginView):
    code_serializer = LoginBackupCodeSerializer

    def finish(self, request: HttpRequest, code: str) -> services.BackupCodeResult:
        return services.complete_login_with_backup_code(request, code)

    def refused(self, result: services.BackupCodeResult) -> Response:
        return backup_code_failure(result)
