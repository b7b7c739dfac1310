"""What every API view shares: the base view (error shape, strict JSON, never cached), reading the body, and the
answers more than one flow gives (a challenge on its way, a bad address or purpose, a sign-in token)."""

from __future__ import annotations

import codecs
import json
import re
from array import array
from datetime import timedelta
from itertools import accumulate
from typing import Any

from django.apps import apps as django_apps
from django.conf import settings
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from drf_spectacular.openapi import AutoSchema
from rest_framework import status
from rest_framework.exceptions import ParseError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer
from rest_framework.utils import json as drf_json
from rest_framework.views import APIView

from django_emailotp.api.errors import ErrorCode, JSONTooDeep, api_exception_handler, error_body, refusal
from django_emailotp.api.serializers import ChallengeSerializer
from django_emailotp.conf import app_settings
from django_emailotp.delivery import mask_address
from django_emailotp.exceptions import (
    DeliveryUnavailable,
    LimiterUnavailable,
    LockedOut,
    NoEmailAddress,
    RateLimited,
    ResendCooldown,
)
from django_emailotp.models import Challenge
from django_emailotp.texts import DELIVERY_DOWN, INVALID_ADDRESS, NO_ADDRESS, RESEND_WAIT, UNKNOWN_PURPOSE


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise ValueError(f'Duplicate key "{key[:64]}".')
        data[key] = value
    return data


# Our bodies are flat objects; 32 levels leave room for any field and stay far below the recursion limit, which
# Python's json module would otherwise hit (a RecursionError, so a 500) at about a thousand.
MAX_JSON_DEPTH = 32
# Escapes first, then strings: each pattern is matched once per position, so the scan stays linear. (One pattern
# for a string with its escapes retries from every quote of an unclosed string: quadratic on '"\\"\\"\\"...'.)
_JSON_ESCAPE = re.compile(r"\\.", re.DOTALL)
_JSON_STRING = re.compile(r'"[^"]*"')
# Each byte of the body as a step in depth: +1 for [ and {, -1 (0xff as a signed byte) for ] and }, 0 for the rest.
_DEPTH_STEPS = bytes(1 if byte in b"[{" else 0xFF if byte in b"]}" else 0 for byte in range(256))


def _nesting_depth(text: str) -> int:
    """How deep the JSON text nests, brackets inside strings being text; in linear time, in C but for one sum.

    Exact for valid JSON, and never below the depth Python's parser reaches in invalid JSON before it stops.
    """
    outside_strings = _JSON_STRING.sub("", _JSON_ESCAPE.sub("", text))
    steps = outside_strings.encode().translate(_DEPTH_STEPS).replace(b"\x00", b"")
    return max(accumulate(array("b", steps)), default=0)


class StrictJSONParser(JSONParser):
    """JSON where each key appears once (parsers differ in which of two values they keep, so trust neither),
    nested at most ``MAX_JSON_DEPTH`` levels; the size is bounded by Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE``."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = codecs.getreader(encoding)(stream).read()
            # Each bracket opens at most one level: the usual body, with a handful, needs no scan.
            if text.count("[") + text.count("{") > MAX_JSON_DEPTH and _nesting_depth(text) > MAX_JSON_DEPTH:
                raise JSONTooDeep(MAX_JSON_DEPTH)
            return json.loads(
                text,
                parse_constant=drf_json.strict_constant if self.strict else None,
                object_pairs_hook=_unique_keys,
            )
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc


class EmailOTPAPIView(APIView):
    """Every view here renders errors as ``{"error", "message", ...}`` and is never cached."""

    # Our own schema class (see ``api.docs.documented``), so the project need not make drf-spectacular its
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


def unsupported_purpose() -> Response:
    return Response(error_body(ErrorCode.UNSUPPORTED_PURPOSE, UNKNOWN_PURPOSE), status=400)


def invalid_address() -> Response:
    body = error_body(
        ErrorCode.MALFORMED, "The request is not valid; see fields.", field_errors={"email": [str(INVALID_ADDRESS)]}
    )
    return Response(body, status=400)


def with_sign_in_token(body: dict[str, Any], user: Any) -> dict[str, Any]:
    """``body`` plus the user's DRF token when EMAIL_OTP_API_SIGN_IN_TOKEN is on (and authtoken installed)."""
    if app_settings.API_SIGN_IN_TOKEN and django_apps.is_installed("rest_framework.authtoken"):
        from rest_framework.authtoken.models import Token

        body["token"] = Token.objects.get_or_create(user=user)[0].key
    return body


@sensitive_post_parameters("code")
def _mark_code_sensitive(request: Any) -> None:
    """Marks the code as sensitive in error reports, like the HTML views do."""


def validated(request: Request, serializer_class: type[Serializer]) -> Any:
    """The request body as ``serializer_class`` validates it; ``malformed`` (400) when it does not."""
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def read_code(request: Request, serializer_class: type[Serializer]) -> Any:
    """:func:`validated` for a body that carries a code, the code kept out of error reports."""
    _mark_code_sensitive(request._request)
    return validated(request, serializer_class)
