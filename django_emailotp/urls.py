from __future__ import annotations

from django.urls import path

from django_emailotp import views

app_name = "emailotp"

urlpatterns = [
    path("verify/", views.StepUpView.as_view(), name="verify"),
    path("send/", views.send_code, name="send"),
    path("continue/", views.continue_post, name="continue"),
]
