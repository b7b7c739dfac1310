"""The HTTP level's floor: the least an authenticated DRF endpoint that writes one row can do."""

from __future__ import annotations

import uuid

from django.db.models import F
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from django_emailotp.models import Challenge, ChallengeStatus


class SessionUpdateFloorView(APIView):
    """A bare APIView with the API's authentication (the project's DEFAULT_AUTHENTICATION_CLASSES: session) and
    ``IsAuthenticated``, as the API's views have: the request loads the session and its user. Then one conditional
    UPDATE by primary key, in autocommit (the same statement as the engine-level floor). It does not parse the
    body. 409 when no row matched, so a broken run cannot look fast."""

    permission_classes = (IsAuthenticated,)

    def post(self, request: Request, challenge_id: uuid.UUID) -> Response:
        updated = Challenge.objects.filter(pk=challenge_id, status=ChallengeStatus.PENDING).update(
            attempts=F("attempts") + 1
        )
        return Response({"updated": updated}, status=200 if updated else 409)
