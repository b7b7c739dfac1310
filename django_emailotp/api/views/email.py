"""Email verification and change: send a code to an address (the account's own, or a new one), then confirm it."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_view
from rest_framework import status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from django_emailotp import services
from django_emailotp.api import docs
from django_emailotp.api.errors import ErrorCode, error_body, refusal, verification_failure
from django_emailotp.api.permissions import StepUpRequired
from django_emailotp.api.serializers import CodeSerializer, EmailRequestSerializer, EmailVerifiedSerializer
from django_emailotp.api.views.base import EmailOTPAPIView, invalid_address, issue_response, read_code, validated
from django_emailotp.conf import app_settings
from django_emailotp.delivery import clean_address
from django_emailotp.exceptions import LimiterUnavailable, NoEmailAddress
from django_emailotp.texts import EMAIL_IN_USE


@extend_schema_view(post=docs.EMAIL_REQUEST)
class EmailView(EmailOTPAPIView):
    permission_classes = (IsAuthenticated,)

    def post(self, request: Request) -> Response:
        data = validated(request, EmailRequestSerializer)
        change = data["change"]
        raw = data.get("email")
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


@extend_schema_view(post=docs.EMAIL_VERIFY)
class EmailVerifyView(EmailOTPAPIView):
    permission_classes = (IsAuthenticated,)

    def post(self, request: Request) -> Response:
        code = read_code(request, CodeSerializer)["code"]
        challenge = services.latest_email_verification(request)
        try:
            confirmation = services.confirm_email(request, challenge.pk if challenge is not None else "", code)
        except LimiterUnavailable as exc:
            return refusal(exc)
        if confirmation.in_use:
            return Response(error_body(ErrorCode.EMAIL_IN_USE, EMAIL_IN_USE), status=status.HTTP_409_CONFLICT)
        if not confirmation.success:
            return verification_failure(confirmation.verification, app_settings.MAX_ATTEMPTS)
        body = {"verified": True, "email": confirmation.email, "changed": confirmation.changed}
        return Response(EmailVerifiedSerializer(body).data)
