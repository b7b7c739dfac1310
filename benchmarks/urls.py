"""The HTTP level's URLconf: the REST API as a site mounts it, and the floor view beside it."""

from __future__ import annotations

from django.urls import include, path

from benchmarks.views import SessionUpdateFloorView

urlpatterns = [
    path("api/otp/", include("django_emailotp.api.urls")),
    path("bench/floor/<uuid:challenge_id>/", SessionUpdateFloorView.as_view(), name="bench-floor"),
]
