"""The API views: thin translations between JSON and services. Errors: see errors.py."""

from __future__ import annotations

import codecs
import json
from datetime import timedelta
from typing import Any

from django.apps import apps as django_apps
from django.conf import settings
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth import login as django_login
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.debug import sensitive_post_parameters
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import ParseError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import SAFE_METHODS, AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils import json as drf_json
from rest_framework.views import APIView

from django_emailotp import services
from django_emailotp.api.errors import ErrorCode, api_exception_handler, error_body, refusal, verification_failure
from django_emailotp.api.permissions import SignedInOrSigningIn, StepUpRequired
from django_emailotp.api.serializers import (
    BackupCodeCountSerializer,
    BackupCodeSerializer,
    BackupCodeSetSerializer,
    BackupCodeVerifiedSerializer,
    ChallengeCreateSerializer,
    ChallengeSerializer,
    CodeSerializer,
    EmailRequestSerializer,
    EmailVerifiedSerializer,
    ErrorSerializer,
    LoggedInSerializer,
    LoginBackupCodeSerializer,
    LoginChallengeSerializer,
    LoginSerializer,
    StepUpStatusSerializer,
    VerifiedSerializer,
)
from django_emailotp.conf import app_settings
from django_emailotp.delivery import clean_address, mask_address
from django_emailotp.exceptions import (
    DeliveryUnavailable,
    LimiterUnavailable,
    LockedOut,
    NoEmailAddress,
    RateLimited,
    ResendCooldown,
)
from django_emailotp.models import Challenge
from django_emailotp.purposes import SIGN_IN, STEP_UP, STEP_UP_PURPOSES, is_step_up_purpose
from django_emailotp.services import StepUpRequirement
from django_emailotp.texts import (
    BACKUP_CODE_ERRORS,
    DELIVERY_DOWN,
    EMAIL_IN_USE,
    INVALID_ADDRESS,
    INVALID_CREDENTIALS,
    NO_ADDRESS,
    NOT_FOUND,
    RESEND_WAIT,
    UNKNOWN_PURPOSE,
)

ID_PARAMETER = OpenApiParameter("challenge_id", str, OpenApiParameter.PATH, description="The challenge's id (UUID).")
EXAMPLE_ID = "5f0c6b1e-8f7a-4a51-9a55-0a4f2b8f3c11"
EXAMPLE_TIME = "2026-11-23T18:05:00Z"


def _error(code: ErrorCode, summary: str, **extra: Any) -> OpenApiExample:
    return OpenApiExample(code, summary=summary, value={"error": str(code), "message": summary, **extra})


CHALLENGE_EXAMPLE = OpenApiExample(
    "issued",
    value={
        "id": EXAMPLE_ID,
        "purpose": "step_up",
        "expires_at": EXAMPLE_TIME,
        "resend_available_at": "2026-11-23T18:01:00Z",
        "email_hint": "j***@example.com",
    },
)
ISSUE_ERRORS = {
    400: OpenApiResponse(
        ErrorSerializer,
        "Malformed request or a purpose that cannot be confirmed here.",
        [
            _error(
                ErrorCode.MALFORMED, "The request is not valid; see fields.", field_errors={"purpose": ["Required."]}
            ),
            _error(ErrorCode.UNSUPPORTED_PURPOSE, "This confirmation is not available."),
        ],
    ),
    401: OpenApiResponse(
        ErrorSerializer, "Not signed in.", [_error(ErrorCode.NOT_AUTHENTICATED, "Credentials were not provided.")]
    ),
    403: OpenApiResponse(
        ErrorSerializer,
        "CSRF check failed (session auth), or not signed in where SessionAuthentication is the first authenticator.",
        [
            _error(ErrorCode.PERMISSION_DENIED, "CSRF Failed."),
            _error(ErrorCode.NOT_AUTHENTICATED, "Authentication credentials were not provided."),
        ],
    ),
    429: OpenApiResponse(
        ErrorSerializer,
        "A code was sent moments ago, a rate limit was reached, or the account's email codes are locked after "
        "wrong codes; Retry-After says when to try again.",
        [
            _error(ErrorCode.RATE_LIMITED, "Please wait 42 seconds before asking for another code.", retry_after=42),
            _error(ErrorCode.LOCKED_OUT, "Too many wrong codes: codes by email are paused.", retry_after=900),
        ],
    ),
    503: OpenApiResponse(
        ErrorSerializer,
        "The email could not be handed to delivery (for example, the broker is down), or the rate limiter's "
        "store is not answering (requests are refused until it does).",
        [
            _error(ErrorCode.DELIVERY_UNAVAILABLE, "We could not send a code right now."),
            _error(ErrorCode.TEMPORARILY_UNAVAILABLE, "This is unavailable for a moment.", retry_after=30),
        ],
    ),
}
VERIFY_REFUSALS = {
    429: OpenApiResponse(
        ErrorSerializer,
        "Too many failed codes from this network, or the account's email codes are locked.",
        [
            _error(ErrorCode.RATE_LIMITED, "Too many attempts from your network.", retry_after=1800),
            _error(ErrorCode.LOCKED_OUT, "Too many wrong codes: codes by email are paused.", retry_after=900),
        ],
    ),
    503: OpenApiResponse(
        ErrorSerializer,
        "The rate limiter's store is not answering; requests are refused until it does.",
        [_error(ErrorCode.TEMPORARILY_UNAVAILABLE, "This is unavailable for a moment.", retry_after=30)],
    ),
}


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise ValueError(f'Duplicate key "{key[:64]}".')
        data[key] = value
    return data


class StrictJSONParser(JSONParser):
    """JSON where each key appears once: parsers differ in which of two values they keep, so trust neither."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            return json.load(
                codecs.getreader(encoding)(stream),
                parse_constant=drf_json.strict_constant if self.strict else None,
                object_pairs_hook=_unique_keys,
            )
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc


# What any operation can answer, whatever its own errors: the wrong method, an Accept it cannot serve.
GENERIC_ERRORS = {
    405: OpenApiResponse(
        ErrorSerializer, "Wrong HTTP method.", [_error(ErrorCode.METHOD_NOT_ALLOWED, 'Method "GET" not allowed.')]
    ),
    406: OpenApiResponse(
        ErrorSerializer,
        "The Accept header names no type this API serves (it serves application/json).",
        [_error(ErrorCode.NOT_ACCEPTABLE, "Could not satisfy the request Accept header.")],
    ),
}
# What any operation with a request body can answer.
BODY_ERRORS = {
    **GENERIC_ERRORS,
    413: OpenApiResponse(
        ErrorSerializer,
        "The body is larger than DATA_UPLOAD_MAX_MEMORY_SIZE.",
        [_error(ErrorCode.TOO_LARGE, "The request body is too large.")],
    ),
    415: OpenApiResponse(
        ErrorSerializer,
        "The body is not JSON, form-encoded or multipart.",
        [_error(ErrorCode.UNSUPPORTED_MEDIA_TYPE, 'Unsupported media type "text/plain" in request.')],
    ),
}


def documented(**kwargs: Any) -> Any:
    """``extend_schema`` built on drf-spectacular's AutoSchema whatever the project's DEFAULT_SCHEMA_CLASS is.

    On a method, extend_schema extends the function's own ``schema`` or else the project's default, which for a
    project without drf-spectacular configured is DRF's: the schema view would then fail.
    """

    def decorate(method: Any) -> Any:
        method.schema = AutoSchema
        return extend_schema(**kwargs)(method)

    return decorate


class EmailOTPAPIView(APIView):
    """Every view here renders errors as ``{"error", "message", ...}`` and is never cached."""

    # Our own schema class (see ``documented``), so the project need not make drf-spectacular its
    # DEFAULT_SCHEMA_CLASS.
    schema = AutoSchema()
    parser_classes = (StrictJSONParser, FormParser, MultiPartParser)

    def get_exception_handler(self) -> Any:
        return api_exception_handler

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        return never_cache(super().as_view(**initkwargs))


def challenge_body(challenge: Challenge) -> dict[str, Any]:
    return {
        "id": challenge.pk,
        "purpose": challenge.purpose,
        "expires_at": challenge.expires_at,
        "resend_available_at": challenge.created_at + timedelta(seconds=app_settings.RESEND_COOLDOWN),
        "email_hint": mask_address(challenge.email),
    }


def issue_response(issue: Any, *, email_hint: str | None = None) -> Response:
    """Run an issue and answer 202 with the challenge, or the matching error.

    ``email_hint`` replaces the masked destination (sign-in shows the address as typed, for every address alike).
    """
    try:
        challenge = issue()
    except (LockedOut, RateLimited, LimiterUnavailable) as exc:
        return refusal(exc)
    except ResendCooldown as exc:
        body = error_body(
            ErrorCode.RATE_LIMITED, RESEND_WAIT % {"seconds": exc.retry_after}, retry_after=exc.retry_after
        )
        return Response(body, status=429, headers={"Retry-After": str(exc.retry_after)})
    except DeliveryUnavailable:
        return Response(
            error_body(ErrorCode.DELIVERY_UNAVAILABLE, DELIVERY_DOWN), status=503, headers={"Retry-After": "60"}
        )
    except NoEmailAddress:
        return Response(error_body(ErrorCode.UNSUPPORTED_PURPOSE, NO_ADDRESS), status=400)
    body = challenge_body(challenge)
    if email_hint is not None:
        body["email_hint"] = email_hint
    return Response(ChallengeSerializer(body).data, status=status.HTTP_202_ACCEPTED)


SIGN_IN_REQUEST_EXAMPLE = OpenApiExample(
    "sign_in", value={"purpose": "sign_in", "email": "jane@example.com"}, request_only=True
)
STEP_UP_REQUEST_EXAMPLE = OpenApiExample("step_up", value={"purpose": "step_up"}, request_only=True)


class ChallengeCreateView(EmailOTPAPIView):
    """Step-up codes for signed-in clients; ``sign_in`` codes for anyone while sign-in is on."""

    permission_classes = (SignedInOrSigningIn,)

    @documented(
        operation_id="emailotp_challenge_create",
        summary="Send a code",
        description="A step-up code for the signed-in client, or (anonymous clients too, while "
        "EMAIL_OTP_SIGN_IN_ENABLED) a sign_in code for an email address. Sign-in answers 202 with a real challenge "
        "whether or not the address has an account; keep the session cookie for the verify call.",
        request=ChallengeCreateSerializer,
        examples=[STEP_UP_REQUEST_EXAMPLE, SIGN_IN_REQUEST_EXAMPLE],
        responses={
            202: OpenApiResponse(ChallengeSerializer, "A code is on its way.", [CHALLENGE_EXAMPLE]),
            **ISSUE_ERRORS,
            **BODY_ERRORS,
        },
    )
    def post(self, request: Request) -> Response:
        serializer = ChallengeCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        purpose = serializer.validated_data["purpose"]
        if purpose == SIGN_IN:
            return self.sign_in(request, serializer.validated_data.get("email"))
        if not request.user.is_authenticated:
            self.permission_denied(request)
        if not is_step_up_purpose(purpose):
            return Response(error_body(ErrorCode.UNSUPPORTED_PURPOSE, UNKNOWN_PURPOSE), status=400)
        action = serializer.validated_data.get("action", "")
        return issue_response(
            lambda: services.issue_challenge(user=request.user, purpose=purpose, request=request, action=action)
        )

    def sign_in(self, request: Request, email: str | None) -> Response:
        if not app_settings.SIGN_IN_ENABLED:
            return Response(error_body(ErrorCode.UNSUPPORTED_PURPOSE, UNKNOWN_PURPOSE), status=400)
        try:
            address = clean_address(email)
        except NoEmailAddress:
            return invalid_address()
        return issue_response(
            lambda: services.request_sign_in(address, request=request), email_hint=mask_address(address)
        )


def invalid_address() -> Response:
    body = error_body(
        ErrorCode.MALFORMED, "The request is not valid; see fields.", field_errors={"email": [str(INVALID_ADDRESS)]}
    )
    return Response(body, status=400)


class ChallengeResendView(EmailOTPAPIView):
    permission_classes = (IsAuthenticated,)

    @documented(
        operation_id="emailotp_challenge_resend",
        summary="Send a new code for a challenge",
        request=None,
        parameters=[ID_PARAMETER],
        responses={
            202: OpenApiResponse(
                ChallengeSerializer, "A new code is on its way; the old one no longer works.", [CHALLENGE_EXAMPLE]
            ),
            404: OpenApiResponse(
                ErrorSerializer, "No such challenge for you.", [_error(ErrorCode.NOT_FOUND, "Not found.")]
            ),
            **ISSUE_ERRORS,
            **BODY_ERRORS,
        },
    )
    def post(self, request: Request, challenge_id: str) -> Response:
        try:
            return issue_response(
                lambda: services.resend_challenge(challenge_id, request=request, purpose=STEP_UP_PURPOSES)
            )
        except Challenge.DoesNotExist:
            return Response(error_body(ErrorCode.NOT_FOUND, NOT_FOUND), status=404)


@sensitive_post_parameters("code")
def _sensitive(request: Any) -> None:
    """Marks the code as sensitive in error reports, like the HTML views do."""


class ChallengeVerifyView(EmailOTPAPIView):
    """Signed-in clients verify step-up codes; anonymous ones (while sign-in is on) sign in."""

    permission_classes = (SignedInOrSigningIn,)

    @documented(
        operation_id="emailotp_challenge_verify",
        summary="Verify a code",
        request=CodeSerializer,
        parameters=[ID_PARAMETER],
        responses={
            200: OpenApiResponse(
                VerifiedSerializer,
                "The code was right: step-up is granted to this session or token; or, for an anonymous client's "
                "sign_in code, the session is signed in (with a DRF token when EMAIL_OTP_API_SIGN_IN_TOKEN is on).",
                [
                    OpenApiExample(
                        "verified", value={"verified": True, "purpose": "step_up", "step_up_expires_at": EXAMPLE_TIME}
                    ),
                    OpenApiExample(
                        "signed_in",
                        value={
                            "verified": True,
                            "purpose": "sign_in",
                            "step_up_expires_at": None,
                            "token": "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b",
                        },
                    ),
                ],
            ),
            400: OpenApiResponse(
                ErrorSerializer,
                "The code was not accepted. Unknown or foreign ids answer like a wrong code.",
                [
                    _error(ErrorCode.INVALID_CODE, "That code is not right.", attempts_remaining=4),
                    _error(ErrorCode.EXPIRED, "That code has expired.", attempts_remaining=0),
                    _error(ErrorCode.USED, "That code has already been used.", attempts_remaining=0),
                    _error(ErrorCode.BURNED, "Too many wrong attempts.", attempts_remaining=0),
                    _error(ErrorCode.SUPERSEDED, "A newer code was sent.", attempts_remaining=0),
                    _error(ErrorCode.MALFORMED, "Enter the code as digits only.", field_errors={"code": ["..."]}),
                ],
            ),
            401: ISSUE_ERRORS[401],
            **VERIFY_REFUSALS,
            403: ISSUE_ERRORS[403],
            **BODY_ERRORS,
        },
    )
    def post(self, request: Request, challenge_id: str) -> Response:
        _sensitive(request._request)
        serializer = CodeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if not request.user.is_authenticated:
            return self.sign_in(request, challenge_id, serializer.validated_data["code"])
        try:
            result = services.complete_step_up(challenge_id, serializer.validated_data["code"], request=request)
        except LimiterUnavailable as exc:
            return refusal(exc)
        if not result.success:
            return verification_failure(result, app_settings.MAX_ATTEMPTS)
        assert result.challenge is not None
        grant = result.grant
        body = {
            "verified": True,
            "purpose": result.challenge.purpose,
            "step_up_expires_at": grant.expires_at if grant is not None else None,
        }
        return Response(VerifiedSerializer(body).data)

    def sign_in(self, request: Request, challenge_id: str, code: str) -> Response:
        try:
            result = services.complete_sign_in(request, challenge_id, code)
        except LimiterUnavailable as exc:
            return refusal(exc)
        if not result.success:
            return verification_failure(result.verification, app_settings.MAX_ATTEMPTS)
        body: dict[str, Any] = {"verified": True, "purpose": SIGN_IN, "step_up_expires_at": None}
        return Response(VerifiedSerializer(with_sign_in_token(body, result.user)).data)


def with_sign_in_token(body: dict[str, Any], user: Any) -> dict[str, Any]:
    """``body`` plus the user's DRF token when EMAIL_OTP_API_SIGN_IN_TOKEN is on (and authtoken installed)."""
    if app_settings.API_SIGN_IN_TOKEN and django_apps.is_installed("rest_framework.authtoken"):
        from rest_framework.authtoken.models import Token

        body["token"] = Token.objects.get_or_create(user=user)[0].key
    return body


STEP_UP_NEEDED = OpenApiResponse(
    ErrorSerializer,
    "Not signed in, or no fresh step-up (RFC 9470 WWW-Authenticate for token clients).",
    [
        _error(
            ErrorCode.STEP_UP_REQUIRED,
            "Confirm it is you with a code sent to your email address first.",
            purpose="step_up",
            max_age=300,
            challenge_url="/api/otp/challenges/",
        )
    ],
)


class BackupCodesView(EmailOTPAPIView):
    """GET: how many unused backup codes are left. POST: a new set (needs a fresh step-up), shown once."""

    def get_permissions(self) -> list[Any]:
        if self.request.method == "POST":
            return [IsAuthenticated(), StepUpRequired()]
        return [IsAuthenticated()]

    @documented(
        operation_id="emailotp_backup_codes_count",
        summary="How many backup codes are left",
        responses={
            200: OpenApiResponse(
                BackupCodeCountSerializer, "Unused codes.", [OpenApiExample("left", value={"remaining": 7})]
            ),
            401: ISSUE_ERRORS[401],
            **GENERIC_ERRORS,
        },
    )
    def get(self, request: Request) -> Response:
        return Response({"remaining": services.backup_codes_remaining(request.user)})

    @documented(
        operation_id="emailotp_backup_codes_generate",
        summary="Replace the backup codes with a new set",
        request=None,
        responses={
            201: OpenApiResponse(
                BackupCodeSetSerializer,
                "The new codes, shown this once; every older code stopped working.",
                [OpenApiExample("set", value={"codes": ["ABCDE-FGHJK", "MNPQR-STVWX"], "remaining": 2})],
            ),
            401: STEP_UP_NEEDED,
            **BODY_ERRORS,
        },
    )
    def post(self, request: Request) -> Response:
        codes = services.regenerate_backup_codes(request.user, request=request)
        return Response({"codes": codes, "remaining": len(codes)}, status=status.HTTP_201_CREATED)


def backup_code_failure(result: services.BackupCodeResult) -> Response:
    """429 with Retry-After past the backup-code throttle; else 400 (malformed, or not a valid unused code)."""
    if result.reason == services.BackupCodeReason.RATE_LIMITED:
        body = error_body(ErrorCode.RATE_LIMITED, BACKUP_CODE_ERRORS["rate_limited"], retry_after=result.retry_after)
        return Response(body, status=429, headers={"Retry-After": str(result.retry_after)})
    code = (
        ErrorCode.MALFORMED if result.reason == services.BackupCodeReason.MALFORMED else ErrorCode.INVALID_BACKUP_CODE
    )
    return Response(error_body(code, BACKUP_CODE_ERRORS[str(result.reason)]), status=400)


BACKUP_CODE_ERRORS_DOC = {
    400: OpenApiResponse(
        ErrorSerializer,
        "Not a valid unused backup code, or not shaped like one.",
        [
            _error(ErrorCode.INVALID_BACKUP_CODE, "That backup code is not right, or it was used already."),
            _error(ErrorCode.MALFORMED, "A backup code has 10 letters and digits, like ABCDE-FGHJK."),
        ],
    ),
    429: OpenApiResponse(
        ErrorSerializer,
        "Too many wrong backup codes for this account.",
        [_error(ErrorCode.RATE_LIMITED, "Too many wrong backup codes.", retry_after=600)],
    ),
}


class BackupCodeStepUpView(EmailOTPAPIView):
    permission_classes = (IsAuthenticated,)

    @documented(
        operation_id="emailotp_step_up_backup_code",
        summary="Step up with a backup code",
        request=BackupCodeSerializer,
        responses={
            200: OpenApiResponse(
                BackupCodeVerifiedSerializer,
                "The backup code was right (and is now used up): step-up is granted.",
                [
                    OpenApiExample(
                        "verified",
                        value={
                            "verified": True,
                            "purpose": "step_up",
                            "step_up_expires_at": EXAMPLE_TIME,
                            "backup_codes_remaining": 9,
                        },
                    )
                ],
            ),
            400: BACKUP_CODE_ERRORS_DOC[400],
            401: ISSUE_ERRORS[401],
            429: BACKUP_CODE_ERRORS_DOC[429],
            **BODY_ERRORS,
        },
    )
    def post(self, request: Request) -> Response:
        _sensitive(request._request)
        serializer = BackupCodeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        purpose = serializer.validated_data["purpose"]
        if not is_step_up_purpose(purpose):
            return Response(error_body(ErrorCode.UNSUPPORTED_PURPOSE, UNKNOWN_PURPOSE), status=400)
        try:
            result = services.complete_step_up_with_backup_code(
                request, serializer.validated_data["code"], purpose=purpose
            )
        except LimiterUnavailable as exc:
            return refusal(exc)
        if not result.success:
            return backup_code_failure(result)
        grant = services.find_step_up_grant(request, StepUpRequirement(purpose=purpose))
        body = {
            "verified": True,
            "purpose": purpose,
            "step_up_expires_at": grant.expires_at if grant is not None else None,
            "backup_codes_remaining": result.remaining,
        }
        return Response(BackupCodeVerifiedSerializer(body).data)


class StepUpStatusView(EmailOTPAPIView):
    permission_classes = (IsAuthenticated,)

    @documented(
        operation_id="emailotp_step_up_status",
        summary="Do I need to step up?",
        parameters=[
            OpenApiParameter("purpose", str, description="Defaults to step_up."),
            OpenApiParameter("max_age", int, description="Seconds; defaults to EMAIL_OTP_STEP_UP_MAX_AGE."),
        ],
        responses={
            200: OpenApiResponse(
                StepUpStatusSerializer,
                "Whether this session or token holds a fresh grant.",
                [OpenApiExample("fresh", value={"verified": True, "expires_at": EXAMPLE_TIME, "max_age": 300})],
            ),
            400: OpenApiResponse(
                ErrorSerializer,
                "Unknown purpose or a bad max_age.",
                [_error(ErrorCode.UNSUPPORTED_PURPOSE, "This confirmation is not available.")],
            ),
            401: ISSUE_ERRORS[401],
            403: OpenApiResponse(
                ErrorSerializer,
                "Not signed in, where SessionAuthentication is the first authenticator.",
                [_error(ErrorCode.NOT_AUTHENTICATED, "Authentication credentials were not provided.")],
            ),
            **GENERIC_ERRORS,
        },
    )
    def get(self, request: Request) -> Response:
        purpose = request.query_params.get("purpose", STEP_UP)
        if not is_step_up_purpose(purpose):
            return Response(error_body(ErrorCode.UNSUPPORTED_PURPOSE, UNKNOWN_PURPOSE), status=400)
        raw_max_age = request.query_params.get("max_age")
        max_age = None
        if raw_max_age is not None:
            if not (raw_max_age.isascii() and raw_max_age.isdigit()) or not 0 < int(raw_max_age) <= 86400:
                return Response(
                    error_body(ErrorCode.MALFORMED, "max_age must be a whole number of seconds from 1 to 86400."),
                    status=400,
                )
            max_age = int(raw_max_age)
        requirement = StepUpRequirement(purpose=purpose, max_age=max_age)
        grant = services.find_step_up_grant(request, requirement)
        body = {
            "verified": grant is not None,
            "expires_at": grant.expires_at if grant else None,
            "max_age": requirement.window,
        }
        return Response(StepUpStatusSerializer(body).data)


# ---------------------------------------------------------------------------------------------------------------
# Second factor at login: the password, then (when EMAIL_OTP_LOGIN_POLICY asks) a code. The pending login lives in
# the session (services.begin_login), so these endpoints are for cookie clients, CSRF-protected like Django's
# LoginView even while anonymous; only services.complete_login* call login().

CSRF_REFUSED = OpenApiResponse(
    ErrorSerializer,
    "CSRF check failed: send the csrftoken cookie's value in X-CSRFToken (GET login/ sets the cookie).",
    [_error(ErrorCode.PERMISSION_DENIED, "CSRF Failed: CSRF cookie not set.")],
)
LOGGED_IN = OpenApiResponse(
    LoggedInSerializer,
    "Logged in: the session cookie now carries the login (plus a DRF token when EMAIL_OTP_API_SIGN_IN_TOKEN is on).",
    [
        OpenApiExample("logged_in", value={"logged_in": True}),
        OpenApiExample("with_token", value={"logged_in": True, "token": "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"}),
    ],
)


@sensitive_post_parameters("password")
def _sensitive_password(request: Any) -> None:
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


class LoginView(SessionLoginAPIView):
    @documented(
        operation_id="emailotp_login_status",
        summary="Am I logged in? (sets the CSRF cookie)",
        responses={
            200: OpenApiResponse(
                LoggedInSerializer,
                "Whether this session is logged in; the response sets the csrftoken cookie for the POSTs.",
                [OpenApiExample("anonymous", value={"logged_in": False})],
            ),
            **GENERIC_ERRORS,
        },
    )
    def get(self, request: Request) -> Response:
        return Response({"logged_in": bool(request.user and request.user.is_authenticated)})

    @documented(
        operation_id="emailotp_login",
        summary="Log in with a password (then, maybe, a code)",
        description="Django's authenticate() with the user model's USERNAME_FIELD. When EMAIL_OTP_LOGIN_POLICY asks "
        "for a second factor (and the browser is not remembered) nothing is logged in yet: a code is sent and the "
        "answer is 202; finish at login/verify/ or login/backup-code/ with the same session cookie.",
        request=LoginSerializer,
        responses={
            200: LOGGED_IN,
            202: OpenApiResponse(
                LoginChallengeSerializer,
                "The password was right; a code is on its way and the login waits for it.",
                [
                    OpenApiExample(
                        "second_factor",
                        value={
                            "second_factor_required": True,
                            "id": EXAMPLE_ID,
                            "purpose": "login",
                            "expires_at": EXAMPLE_TIME,
                            "resend_available_at": "2026-11-23T18:01:00Z",
                            "email_hint": "j***@example.com",
                        },
                    )
                ],
            ),
            400: OpenApiResponse(
                ErrorSerializer,
                "Wrong username or password (or an inactive account), or a malformed request.",
                [
                    _error(ErrorCode.INVALID_CREDENTIALS, "That username and password do not match an active account."),
                    _error(ErrorCode.MALFORMED, "The request is not valid; see fields.", field_errors={}),
                ],
            ),
            403: CSRF_REFUSED,
            429: OpenApiResponse(
                ErrorSerializer,
                "The password was right but no code can be sent now (lockout or rate limit); a backup code can still "
                "finish the login at login/backup-code/.",
                [_error(ErrorCode.LOCKED_OUT, "Too many wrong codes: codes by email are paused.", retry_after=900)],
            ),
            503: ISSUE_ERRORS[503],
            **BODY_ERRORS,
        },
    )
    def post(self, request: Request) -> Response:
        _sensitive_password(request._request)
        serializer = LoginSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        http_request = request._request
        credentials = {
            get_user_model().USERNAME_FIELD: serializer.validated_data["username"],
            "password": serializer.validated_data["password"],
        }
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


class LoginVerifyView(SessionLoginAPIView):
    @documented(
        operation_id="emailotp_login_verify",
        summary="Finish a login with the emailed code",
        request=CodeSerializer,
        responses={
            200: LOGGED_IN,
            400: OpenApiResponse(
                ErrorSerializer,
                "The code was not accepted; without a pending login (never started, expired, another session) the "
                "answer is expired or invalid_code.",
                [
                    _error(ErrorCode.INVALID_CODE, "That code is not right.", attempts_remaining=4),
                    _error(ErrorCode.EXPIRED, "That code has expired.", attempts_remaining=0),
                    _error(ErrorCode.MALFORMED, "Enter the code as digits only.", field_errors={"code": ["..."]}),
                ],
            ),
            403: CSRF_REFUSED,
            **VERIFY_REFUSALS,
            **BODY_ERRORS,
        },
    )
    def post(self, request: Request) -> Response:
        _sensitive(request._request)
        serializer = CodeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            result = services.complete_login(request._request, serializer.validated_data["code"])
        except LimiterUnavailable as exc:
            return refusal(exc)
        if not result.success:
            return verification_failure(result, app_settings.MAX_ATTEMPTS)
        return logged_in(request._request.user)


class LoginBackupCodeView(SessionLoginAPIView):
    @documented(
        operation_id="emailotp_login_backup_code",
        summary="Finish a login with a backup code",
        request=LoginBackupCodeSerializer,
        responses={
            200: LOGGED_IN,
            400: OpenApiResponse(
                ErrorSerializer,
                "Not a valid unused backup code (or no login is waiting in this session), or not shaped like one.",
                BACKUP_CODE_ERRORS_DOC[400].examples,
            ),
            403: CSRF_REFUSED,
            429: BACKUP_CODE_ERRORS_DOC[429],
            **BODY_ERRORS,
        },
    )
    def post(self, request: Request) -> Response:
        _sensitive(request._request)
        serializer = LoginBackupCodeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            result = services.complete_login_with_backup_code(request._request, serializer.validated_data["code"])
        except LimiterUnavailable as exc:
            return refusal(exc)
        if not result.success:
            return backup_code_failure(result)
        return logged_in(request._request.user)


# ---------------------------------------------------------------------------------------------------------------
# Email verification and change


class EmailView(EmailOTPAPIView):
    permission_classes = (IsAuthenticated,)

    @documented(
        operation_id="emailotp_email_request",
        summary="Send a code that verifies an email address",
        description="Without email: the account's own address. With change=true the verified address replaces the "
        "account's (a fresh step-up is needed first, and the old address is told). The code confirms only this "
        "address; finish at email/verify/ with the same session or token.",
        request=EmailRequestSerializer,
        examples=[
            OpenApiExample("change", value={"email": "new@example.com", "change": True}, request_only=True),
        ],
        responses={
            202: OpenApiResponse(
                ChallengeSerializer,
                "A code is on its way to the address.",
                [
                    OpenApiExample(
                        "issued",
                        value={
                            "id": EXAMPLE_ID,
                            "purpose": "verify_email",
                            "expires_at": EXAMPLE_TIME,
                            "resend_available_at": "2026-11-23T18:01:00Z",
                            "email_hint": "n***@example.com",
                        },
                    )
                ],
            ),
            400: OpenApiResponse(
                ErrorSerializer,
                "Not a valid address (or none for a change), or the account has no address to verify.",
                [
                    _error(
                        ErrorCode.MALFORMED,
                        "The request is not valid; see fields.",
                        field_errors={"email": ["Enter a valid email address."]},
                    ),
                    _error(ErrorCode.UNSUPPORTED_PURPOSE, "Your account has no email address we can send a code to."),
                ],
            ),
            401: STEP_UP_NEEDED,
            **{k: v for k, v in ISSUE_ERRORS.items() if k in (403, 429, 503)},
            **BODY_ERRORS,
        },
    )
    def post(self, request: Request) -> Response:
        serializer = EmailRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        change = serializer.validated_data["change"]
        raw = serializer.validated_data.get("email")
        if raw is not None or change:
            try:
                raw = clean_address(raw)
            except NoEmailAddress:
                return invalid_address()
        if change:
            StepUpRequired().has_permission(request, self)  # raises StepUpRequiredError without a fresh grant
        user: Any = request.user
        return issue_response(
            lambda: services.request_email_verification(
                user, raw if raw is not None else services.destination_for(user, None), request=request, change=change
            )
        )


class EmailVerifyView(EmailOTPAPIView):
    permission_classes = (IsAuthenticated,)

    @documented(
        operation_id="emailotp_email_verify",
        summary="Verify an email address with the code",
        description="Checks the code of the newest email/ request made with this session or token.",
        request=CodeSerializer,
        responses={
            200: OpenApiResponse(
                EmailVerifiedSerializer,
                "The address is verified (and, for a change, is now the account's).",
                [OpenApiExample("changed", value={"verified": True, "email": "new@example.com", "changed": True})],
            ),
            400: OpenApiResponse(
                ErrorSerializer,
                "The code was not accepted (no request for a code answers like a wrong code).",
                [
                    _error(ErrorCode.INVALID_CODE, "That code is not right.", attempts_remaining=4),
                    _error(ErrorCode.SUPERSEDED, "A newer code was sent.", attempts_remaining=0),
                    _error(ErrorCode.MALFORMED, "Enter the code as digits only.", field_errors={"code": ["..."]}),
                ],
            ),
            401: ISSUE_ERRORS[401],
            403: ISSUE_ERRORS[403],
            409: OpenApiResponse(
                ErrorSerializer,
                "The code was right, but another account now uses the address: nothing changed.",
                [_error(ErrorCode.EMAIL_IN_USE, "That address is already used by another account.")],
            ),
            **VERIFY_REFUSALS,
            **BODY_ERRORS,
        },
    )
    def post(self, request: Request) -> Response:
        _sensitive(request._request)
        serializer = CodeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        challenge = services.latest_email_verification(request)
        try:
            confirmation = services.confirm_email(
                request, challenge.pk if challenge is not None else "", serializer.validated_data["code"]
            )
        except LimiterUnavailable as exc:
            return refusal(exc)
        if confirmation.in_use:
            return Response(error_body(ErrorCode.EMAIL_IN_USE, EMAIL_IN_USE), status=status.HTTP_409_CONFLICT)
        if not confirmation.success:
            return verification_failure(confirmation.verification, app_settings.MAX_ATTEMPTS)
        body = {"verified": True, "email": confirmation.email, "changed": confirmation.changed}
        return Response(EmailVerifiedSerializer(body).data)
