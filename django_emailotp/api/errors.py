"""Stable machine codes of API errors, and the exception handler that renders every error as
``{"error": code, "message": text, ...}``. Documented in docs/api.md; the schema lists them."""

from __future__ import annotations

import enum
import math
from datetime import UTC
from typing import Any

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from django_emailotp.exceptions import LockedOut, RateLimited, SendLimitReached
from django_emailotp.services import BackupCodeReason, BackupCodeResult, VerificationResult, VerifyReason
from django_emailotp.texts import (
    BACKUP_CODE_ERRORS,
    LIMITER_DOWN,
    LOCKED_OUT,
    RATE_LIMITED,
    VERIFY_ERRORS,
    send_limit_message,
)


class ErrorCode(enum.StrEnum):
    INVALID_CODE = "invalid_code"
    EXPIRED = "expired"
    USED = "used"
    BURNED = "burned"
    SUPERSEDED = "superseded"
    MALFORMED = "malformed"
    RATE_LIMITED = "rate_limited"
    LOCKED_OUT = "locked_out"
    STEP_UP_REQUIRED = "step_up_required"
    UNSUPPORTED_PURPOSE = "unsupported_purpose"
    NOT_FOUND = "not_found"
    DELIVERY_UNAVAILABLE = "delivery_unavailable"
    NOT_AUTHENTICATED = "not_authenticated"
    PERMISSION_DENIED = "permission_denied"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    NOT_ACCEPTABLE = "not_acceptable"
    TOO_LARGE = "too_large"
    TOO_DEEP = "too_deep"
    TEMPORARILY_UNAVAILABLE = "temporarily_unavailable"
    INVALID_BACKUP_CODE = "invalid_backup_code"
    INVALID_CREDENTIALS = "invalid_credentials"
    EMAIL_IN_USE = "email_in_use"
    SEND_LIMIT_REACHED = "send_limit_reached"


# Unknown ids, other users' challenges and codes bound elsewhere answer exactly like a wrong code.
VERIFY_ERROR_CODES = {
    VerifyReason.INVALID_CODE: ErrorCode.INVALID_CODE,
    VerifyReason.NOT_FOUND: ErrorCode.INVALID_CODE,
    VerifyReason.WRONG_BINDING: ErrorCode.INVALID_CODE,
    VerifyReason.EXPIRED: ErrorCode.EXPIRED,
    VerifyReason.USED: ErrorCode.USED,
    VerifyReason.BURNED: ErrorCode.BURNED,
    VerifyReason.SUPERSEDED: ErrorCode.SUPERSEDED,
    VerifyReason.MALFORMED: ErrorCode.MALFORMED,
}
DISGUISED_AS_WRONG_CODE = frozenset({VerifyReason.NOT_FOUND, VerifyReason.WRONG_BINDING})


class JSONTooDeep(exceptions.ParseError):
    """A JSON body nested deeper than the parser's limit (``too_deep``)."""

    def __init__(self, limit: int) -> None:
        super().__init__(_("The JSON body is nested deeper than %(limit)d levels.") % {"limit": limit})


_DRF_CODES: list[tuple[type[exceptions.APIException], ErrorCode]] = [
    (JSONTooDeep, ErrorCode.TOO_DEEP),
    (exceptions.ValidationError, ErrorCode.MALFORMED),
    (exceptions.ParseError, ErrorCode.MALFORMED),
    (exceptions.NotAuthenticated, ErrorCode.NOT_AUTHENTICATED),
    (exceptions.AuthenticationFailed, ErrorCode.NOT_AUTHENTICATED),
    (exceptions.PermissionDenied, ErrorCode.PERMISSION_DENIED),
    (exceptions.NotFound, ErrorCode.NOT_FOUND),
    (exceptions.MethodNotAllowed, ErrorCode.METHOD_NOT_ALLOWED),
    (exceptions.NotAcceptable, ErrorCode.NOT_ACCEPTABLE),
    (exceptions.UnsupportedMediaType, ErrorCode.UNSUPPORTED_MEDIA_TYPE),
    (exceptions.Throttled, ErrorCode.RATE_LIMITED),
]


def error_body(code: ErrorCode, message: object, **extra: Any) -> dict[str, Any]:
    return {"error": str(code), "message": str(message), **extra}


def verification_failure(result: VerificationResult, max_attempts: int) -> Response:
    """400 for a failed verification; disguised reasons look like a first wrong guess at a fresh code.

    A malformed code is refused before any challenge is read, so it reports no attempt count (it costs none).
    """
    assert result.reason is not None
    if result.reason in (VerifyReason.LOCKED_OUT, VerifyReason.RATE_LIMITED):
        code = ErrorCode.LOCKED_OUT if result.reason == VerifyReason.LOCKED_OUT else ErrorCode.RATE_LIMITED
        body = error_body(code, VERIFY_ERRORS[result.reason], retry_after=result.retry_after)
        return Response(body, status=429, headers={"Retry-After": str(result.retry_after)})
    code = VERIFY_ERROR_CODES[result.reason]
    message = VERIFY_ERRORS[VerifyReason.INVALID_CODE if code == ErrorCode.INVALID_CODE else result.reason]
    if result.reason == VerifyReason.MALFORMED:
        body = error_body(code, message, field_errors={"code": [str(message)]})
        return Response(body, status=status.HTTP_400_BAD_REQUEST)
    remaining = max_attempts - 1 if result.reason in DISGUISED_AS_WRONG_CODE else result.attempts_remaining
    return Response(error_body(code, message, attempts_remaining=remaining), status=status.HTTP_400_BAD_REQUEST)


def backup_code_failure(result: BackupCodeResult) -> Response:
    """429 with Retry-After past the backup-code throttle; else 400 (malformed, or not a valid unused code)."""
    if result.reason == BackupCodeReason.RATE_LIMITED:
        body = error_body(ErrorCode.RATE_LIMITED, BACKUP_CODE_ERRORS["rate_limited"], retry_after=result.retry_after)
        return Response(body, status=429, headers={"Retry-After": str(result.retry_after)})
    code = ErrorCode.MALFORMED if result.reason == BackupCodeReason.MALFORMED else ErrorCode.INVALID_BACKUP_CODE
    return Response(error_body(code, BACKUP_CODE_ERRORS[str(result.reason)]), status=400)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, then our body shape. Oversized bodies are 413, never a server error."""
    if isinstance(exc, RequestDataTooBig):
        return Response(error_body(ErrorCode.TOO_LARGE, _("The request body is too large.")), status=413)
    if isinstance(exc, SuspiciousOperation):
        return Response(error_body(ErrorCode.MALFORMED, _("The request could not be read.")), status=400)
    response = exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    if isinstance(response.data, dict) and "error" in response.data and "message" in response.data:
        return response  # already ours (StepUpRequiredError)
    code = next((code for cls, code in _DRF_CODES if isinstance(exc, cls)), ErrorCode.MALFORMED)
    extra: dict[str, Any] = {}
    if isinstance(exc, exceptions.ValidationError):
        extra["field_errors"] = (
            response.data if isinstance(response.data, dict) else {"non_field_errors": response.data}
        )
        message: object = _("The request is not valid; see fields.")
    else:
        message = exc.detail if isinstance(exc.detail, str) else _("The request was refused.")
    wait = getattr(exc, "wait", None)
    if isinstance(exc, exceptions.Throttled) and wait is not None:
        extra["retry_after"] = math.ceil(wait)
    response.data = error_body(code, message, **extra)
    return response


def refusal(error: Exception) -> Response:
    """429 for a lockout or a rate limit, 503 when the limiter cannot count: each with Retry-After."""
    if isinstance(error, LockedOut):
        body = error_body(
            ErrorCode.LOCKED_OUT,
            LOCKED_OUT % {"time": error.locked_until.astimezone(UTC).strftime("%H:%M")},
            retry_after=error.retry_after,
        )
        return Response(body, status=429, headers={"Retry-After": str(error.retry_after)})
    if isinstance(error, SendLimitReached):
        body = error_body(ErrorCode.SEND_LIMIT_REACHED, send_limit_message(error), retry_after=error.retry_after)
        return Response(body, status=429, headers={"Retry-After": str(error.retry_after)})
    if isinstance(error, RateLimited):
        message = RATE_LIMITED % {"minutes": max(1, math.ceil(error.retry_after / 60))}
        body = error_body(ErrorCode.RATE_LIMITED, message, retry_after=error.retry_after)
        return Response(body, status=429, headers={"Retry-After": str(error.retry_after)})
    body = error_body(ErrorCode.TEMPORARILY_UNAVAILABLE, LIMITER_DOWN, retry_after=30)
    return Response(body, status=503, headers={"Retry-After": "30"})
