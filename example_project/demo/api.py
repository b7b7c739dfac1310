"""A DRF endpoint that needs step-up: what an SPA or mobile app would protect."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from django_emailotp.api.permissions import StepUpRequired


class SecretView(APIView):
    permission_classes = (IsAuthenticated, StepUpRequired.with_options(max_age=300))

    @extend_schema(responses={200: OpenApiTypes.OBJECT}, summary="The demo's protected data (needs step-up)")
    def get(self, request: Request) -> Response:
        return Response({"secret": "the demo's protected data", "user": request.user.get_username()})
