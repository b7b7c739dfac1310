"""Backup codes: how many are left, and a new set (behind a fresh step-up), shown once."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_view
from rest_framework import status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from django_emailotp import services
from django_emailotp.api import docs
from django_emailotp.api.permissions import StepUpRequired
from django_emailotp.api.views.base import EmailOTPAPIView


@extend_schema_view(get=docs.BACKUP_CODES_COUNT, post=docs.BACKUP_CODES_GENERATE)
class BackupCodesView(EmailOTPAPIView):
    """GET: how many unused backup codes are left. POST: a new set (needs a fresh step-up), shown once."""

    def get_permissions(self) -> list[Any]:
        if self.request.method == "POST":
            return [IsAuthenticated(), StepUpRequired()]
        return [IsAuthenticated()]

    def get(self, request: Request) -> Response:
        return Response({"remaining": services.backup_codes_remaining(request.user)})

    def post(self, request: Request) -> Response:
        codes = services.regenerate_backup_codes(request.user, request=request)
        return Response({"codes": codes, "remaining": len(codes)}, status=status.HTTP_201_CREATED)
