"""Challenges: send a code (step-up, or sign-in by code), send a new one, verify it."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_view
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from django_emailotp import services
from django_emailotp.api import docs
from django_emailotp.api.errors import ErrorCode, error_body, refusal, verification_failure
from django_emailotp.api.permissions import SignedInOrSigningIn
from django_emailotp.api.serializers import ChallengeCreateSerializer, CodeSerializer, VerifiedSerializer
from django_emailotp.api.views.base import (
    EmailOTPAPIView,
    invalid_address,
    issue_response,
    read_code,
    unsupported_purpose,
    validated,
    with_sign_in_token,
)
from django_emailotp.conf import app_settings
from django_emailotp.delivery import clean_address, mask_address
from django_emailotp.exceptions import LimiterUnavailable, NoEmailAddress
from django_emailotp.models import Challenge
from django_emailotp.purposes import SIGN_IN, STEP_UP_PURPOSES, is_step_up_purpose
from django_emailotp.texts import NOT_FOUND


@extend_schema_view(post=docs.CHALLENGE_CREATE)
class ChallengeCreateView(EmailOTPAPIView):
    """Step-up codes for signed-in clients; ``sign_in`` codes for anyone while sign-in is on."""

    permission_classes = (SignedInOrSigningIn,)

    def post(self, request: Request) -> Response:
        data = validated(request, ChallengeCreateSerializer)
        purpose = data["purpose"]
        if purpose == SIGN_IN:
            return self.sign_in(request, data.get("email"))
        if not request.user.is_authenticated:
            self.permission_denied(request)
        if not is_step_up_purpose(purpose):
            return unsupported_purpose()
        action = data.get("action", "")
        return issue_response(
            lambda: services.issue_challenge(user=request.user, purpose=purpose, request=request, action=action)
        )

    def sign_in(self, request: Request, email: str | None) -> Response:
        if not app_settings.SIGN_IN_ENABLED:
            return unsupported_purpose()
        try:
            address = clean_address(email)
        except NoEmailAddress:
            return invalid_address()
        return issue_response(
            lambda: services.request_sign_in(address, request=request), email_hint=mask_address(address)
        )


@extend_schema_view(post=docs.CHALLENGE_RESEND)
class ChallengeResendView(EmailOTPAPIView):
    permission_classes = (IsAuthenticated,)

    def post(self, request: Request, challenge_id: str) -> Response:
        try:
            return issue_response(
                lambda: services.resend_challenge(challenge_id, request=request, purpose=STEP_UP_PURPOSES)
            )
        except Challenge.DoesNotExist:
            return Response(error_body(ErrorCode.NOT_FOUND, NOT_FOUND), status=404)


@extend_schema_view(post=docs.CHALLENGE_VERIFY)
class ChallengeVerifyView(EmailOTPAPIView):
    """Signed-in clients verify step-up codes; anonymous ones (while sign-in is on) sign in."""

    permission_classes = (SignedInOrSigningIn,)

    def post(self, request: Request, challenge_id: str) -> Response:
        code = read_code(request, CodeSerializer)["code"]
        if not request.user.is_authenticated:
            return self.sign_in(request, challenge_id, code)
        try:
            result = services.complete_step_up(challenge_id, code, request=request)
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
