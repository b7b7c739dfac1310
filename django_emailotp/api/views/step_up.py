"""Step-up: is there a fresh grant (status), and stepping up with a backup code instead of an emailed one."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_view
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from django_emailotp import services
from django_emailotp.api import docs
from django_emailotp.api.errors import ErrorCode, backup_code_failure, error_body, refusal
from django_emailotp.api.serializers import BackupCodeSerializer, BackupCodeVerifiedSerializer, StepUpStatusSerializer
from django_emailotp.api.views.base import EmailOTPAPIView, read_code, unsupported_purpose
from django_emailotp.exceptions import LimiterUnavailable
from django_emailotp.purposes import STEP_UP, is_step_up_purpose
from django_emailotp.services import StepUpRequirement


@extend_schema_view(get=docs.STEP_UP_STATUS)
class StepUpStatusView(EmailOTPAPIView):
    permission_classes = (IsAuthenticated,)

    def get(self, request: Request) -> Response:
        purpose = request.query_params.get("purpose", STEP_UP)
        if not is_step_up_purpose(purpose):
            return unsupported_purpose()
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


@extend_schema_view(post=docs.STEP_UP_BACKUP_CODE)
class BackupCodeStepUpView(EmailOTPAPIView):
    permission_classes = (IsAuthenticated,)

    def post(self, request: Request) -> Response:
        data = read_code(request, BackupCodeSerializer)
        purpose = data["purpose"]
        if not is_step_up_purpose(purpose):
            return unsupported_purpose()
        try:
            result = services.complete_step_up_with_backup_code(request, data["code"], purpose=purpose)
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
