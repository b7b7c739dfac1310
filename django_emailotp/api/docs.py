"""The OpenAPI documentation of every operation: summaries, descriptions, examples and response maps.

One ``documented(...)`` decorator per operation, which the views attach with ``extend_schema_view``; the views
themselves hold none of it. docs/openapi.json is what this generates (tests/test_api_schema.py keeps it current).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema

from django_emailotp.api.errors import ErrorCode
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


def documented(**kwargs: Any) -> Callable[[Any], Any]:
    """``extend_schema`` built on drf-spectacular's AutoSchema whatever the project's DEFAULT_SCHEMA_CLASS is.

    On a method, extend_schema extends the function's own ``schema`` or else the project's default, which for a
    project without drf-spectacular configured is DRF's: the schema view would then fail.
    """

    def decorate(method: Any) -> Any:
        method.schema = AutoSchema
        return extend_schema(**kwargs)(method)

    return decorate


ID_PARAMETER = OpenApiParameter("challenge_id", str, OpenApiParameter.PATH, description="The challenge's id (UUID).")
EXAMPLE_ID = "5f0c6b1e-8f7a-4a51-9a55-0a4f2b8f3c11"
EXAMPLE_TIME = "2026-11-23T18:05:00Z"
# An example DRF authtoken key.
EXAMPLE_KEY = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"


def _error(code: ErrorCode, summary: str, **extra: Any) -> OpenApiExample:
    return OpenApiExample(code, summary=summary, value={"error": str(code), "message": summary, **extra})


def _challenge(purpose: str, email_hint: str = "j***@example.com") -> dict[str, Any]:
    """The body of a 202 for a code on its way."""
    return {
        "id": EXAMPLE_ID,
        "purpose": purpose,
        "expires_at": EXAMPLE_TIME,
        "resend_available_at": "2026-11-23T18:01:00Z",
        "email_hint": email_hint,
    }


CHALLENGE_EXAMPLE = OpenApiExample("issued", value=_challenge("step_up"))
# Any body nested more than 32 levels deep, on every operation that reads one (api.views.base.MAX_JSON_DEPTH).
TOO_DEEP = _error(ErrorCode.TOO_DEEP, "The JSON body is nested deeper than 32 levels.")
MALFORMED_CODE = _error(ErrorCode.MALFORMED, "Enter the code as digits only.", field_errors={"code": ["..."]})
WRONG_CODE = _error(ErrorCode.INVALID_CODE, "That code is not right.", attempts_remaining=4)
EXPIRED_CODE = _error(ErrorCode.EXPIRED, "That code has expired.", attempts_remaining=0)
SUPERSEDED_CODE = _error(ErrorCode.SUPERSEDED, "A newer code was sent.", attempts_remaining=0)
NO_CREDENTIALS = _error(ErrorCode.NOT_AUTHENTICATED, "Authentication credentials were not provided.")
LOCKED_OUT = _error(ErrorCode.LOCKED_OUT, "Too many wrong codes: codes by email are paused.", retry_after=900)
LIMITER_DOWN = _error(ErrorCode.TEMPORARILY_UNAVAILABLE, "This is unavailable for a moment.", retry_after=30)
SEND_LIMIT = _error(
    ErrorCode.SEND_LIMIT_REACHED,
    "You have asked for several codes in a short time. You can ask for another one at 10:42 UTC, in 38 minutes.",
    retry_after=2280,
)

ISSUE_ERRORS = {
    400: OpenApiResponse(
        ErrorSerializer,
        "Malformed request (a JSON body nested too deep among them) or a purpose that cannot be confirmed here.",
        [
            _error(
                ErrorCode.MALFORMED, "The request is not valid; see fields.", field_errors={"purpose": ["Required."]}
            ),
            _error(ErrorCode.UNSUPPORTED_PURPOSE, "This confirmation is not available."),
            TOO_DEEP,
        ],
    ),
    401: OpenApiResponse(
        ErrorSerializer, "Not signed in.", [_error(ErrorCode.NOT_AUTHENTICATED, "Credentials were not provided.")]
    ),
    403: OpenApiResponse(
        ErrorSerializer,
        "CSRF check failed (session auth), or not signed in where SessionAuthentication is the first authenticator.",
        [_error(ErrorCode.PERMISSION_DENIED, "CSRF Failed."), NO_CREDENTIALS],
    ),
    429: OpenApiResponse(
        ErrorSerializer,
        "A code was sent moments ago, a rate limit was reached (`send_limit_reached`: the signed-in requester's own "
        "send budget, or the daily limit of codes to a new address), or the account's email codes are locked "
        "after wrong codes; Retry-After says when to try again. Anonymous sign-in is never refused for an "
        "address's limits: it answers 202 and sends nothing.",
        [
            _error(ErrorCode.RATE_LIMITED, "Please wait 42 seconds before asking for another code.", retry_after=42),
            SEND_LIMIT,
            LOCKED_OUT,
        ],
    ),
    503: OpenApiResponse(
        ErrorSerializer,
        "The email could not be handed to delivery (for example, the broker is down), or the rate limiter's "
        "store is not answering (requests are refused until it does).",
        [_error(ErrorCode.DELIVERY_UNAVAILABLE, "We could not send a code right now."), LIMITER_DOWN],
    ),
}
VERIFY_REFUSALS = {
    429: OpenApiResponse(
        ErrorSerializer,
        "Too many failed codes from this network, or the account's email codes are locked.",
        [_error(ErrorCode.RATE_LIMITED, "Too many attempts from your network.", retry_after=1800), LOCKED_OUT],
    ),
    503: OpenApiResponse(
        ErrorSerializer,
        "The rate limiter's store is not answering; requests are refused until it does.",
        [LIMITER_DOWN],
    ),
}
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
BACKUP_CODE_ERRORS = {
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

# ---------------------------------------------------------------------------------------------------------------
# Challenges: send, verify, resend

CHALLENGE_CREATE = documented(
    operation_id="emailotp_challenge_create",
    summary="Send a code",
    description="A step-up code for the signed-in client, or (anonymous clients too, while "
    "EMAIL_OTP_SIGN_IN_ENABLED) a sign_in code for an email address. Sign-in answers 202 with a real challenge "
    "whether or not the address has an account; keep the session cookie for the verify call.",
    request=ChallengeCreateSerializer,
    examples=[
        OpenApiExample("step_up", value={"purpose": "step_up"}, request_only=True),
        OpenApiExample("sign_in", value={"purpose": "sign_in", "email": "jane@example.com"}, request_only=True),
    ],
    responses={
        202: OpenApiResponse(ChallengeSerializer, "A code is on its way.", [CHALLENGE_EXAMPLE]),
        **ISSUE_ERRORS,
        **BODY_ERRORS,
    },
)
CHALLENGE_RESEND = documented(
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
CHALLENGE_VERIFY = documented(
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
                    value={"verified": True, "purpose": "sign_in", "step_up_expires_at": None, "token": EXAMPLE_KEY},
                ),
            ],
        ),
        400: OpenApiResponse(
            ErrorSerializer,
            "The code was not accepted. Unknown or foreign ids answer like a wrong code.",
            [
                WRONG_CODE,
                EXPIRED_CODE,
                _error(ErrorCode.USED, "That code has already been used.", attempts_remaining=0),
                _error(ErrorCode.BURNED, "Too many wrong attempts.", attempts_remaining=0),
                SUPERSEDED_CODE,
                MALFORMED_CODE,
            ],
        ),
        401: ISSUE_ERRORS[401],
        **VERIFY_REFUSALS,
        403: ISSUE_ERRORS[403],
        **BODY_ERRORS,
    },
)

# ---------------------------------------------------------------------------------------------------------------
# Step-up status, and step-up with a backup code

STEP_UP_STATUS = documented(
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
            [NO_CREDENTIALS],
        ),
        **GENERIC_ERRORS,
    },
)
STEP_UP_BACKUP_CODE = documented(
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
        400: BACKUP_CODE_ERRORS[400],
        401: ISSUE_ERRORS[401],
        429: BACKUP_CODE_ERRORS[429],
        **BODY_ERRORS,
    },
)

# ---------------------------------------------------------------------------------------------------------------
# Backup codes

BACKUP_CODES_COUNT = documented(
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
BACKUP_CODES_GENERATE = documented(
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

# ---------------------------------------------------------------------------------------------------------------
# Second factor at login

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
        OpenApiExample("with_token", value={"logged_in": True, "token": EXAMPLE_KEY}),
    ],
)

LOGIN_STATUS = documented(
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
LOGIN = documented(
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
            [OpenApiExample("second_factor", value={"second_factor_required": True, **_challenge("login")})],
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
            "The password was right but no code can be sent now (lockout, or the account's own send budget); a "
            "backup code can still finish the login at login/backup-code/.",
            [LOCKED_OUT, SEND_LIMIT],
        ),
        503: ISSUE_ERRORS[503],
        **BODY_ERRORS,
    },
)
LOGIN_VERIFY = documented(
    operation_id="emailotp_login_verify",
    summary="Finish a login with the emailed code",
    request=CodeSerializer,
    responses={
        200: LOGGED_IN,
        400: OpenApiResponse(
            ErrorSerializer,
            "The code was not accepted; without a pending login (never started, expired, another session) the "
            "answer is expired or invalid_code.",
            [WRONG_CODE, EXPIRED_CODE, MALFORMED_CODE],
        ),
        403: CSRF_REFUSED,
        **VERIFY_REFUSALS,
        **BODY_ERRORS,
    },
)
LOGIN_BACKUP_CODE = documented(
    operation_id="emailotp_login_backup_code",
    summary="Finish a login with a backup code",
    request=LoginBackupCodeSerializer,
    responses={
        200: LOGGED_IN,
        400: OpenApiResponse(
            ErrorSerializer,
            "Not a valid unused backup code (or no login is waiting in this session), or not shaped like one.",
            BACKUP_CODE_ERRORS[400].examples,
        ),
        403: CSRF_REFUSED,
        429: BACKUP_CODE_ERRORS[429],
        **BODY_ERRORS,
    },
)

# ---------------------------------------------------------------------------------------------------------------
# Email verification and change

EMAIL_REQUEST = documented(
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
            [OpenApiExample("issued", value=_challenge("verify_email", email_hint="n***@example.com"))],
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
EMAIL_VERIFY = documented(
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
            [WRONG_CODE, SUPERSEDED_CODE, MALFORMED_CODE],
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
