from __future__ import annotations

from django.urls import path

from django_emailotp.api import views
from django_emailotp.api.schema import SchemaView

app_name = "emailotp-api"

# The operations, in the order the schema lists them.
routes = [
    path("challenges/", views.ChallengeCreateView.as_view(), name="challenge-create"),
    # str, not uuid: a malformed id must answer like a wrong code, not with an HTML 404.
    path("challenges/<str:challenge_id>/verify/", views.ChallengeVerifyView.as_view(), name="challenge-verify"),
    path("challenges/<str:challenge_id>/resend/", views.ChallengeResendView.as_view(), name="challenge-resend"),
    path("step-up/", views.StepUpStatusView.as_view(), name="step-up-status"),
    path("step-up/backup-code/", views.BackupCodeStepUpView.as_view(), name="step-up-backup-code"),
    path("backup-codes/", views.BackupCodesView.as_view(), name="backup-codes"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("login/verify/", views.LoginVerifyView.as_view(), name="login-verify"),
    path("login/backup-code/", views.LoginBackupCodeView.as_view(), name="login-backup-code"),
    path("email/", views.EmailView.as_view(), name="email"),
    path("email/verify/", views.EmailVerifyView.as_view(), name="email-verify"),
]
urlpatterns = [*routes, path("schema/", SchemaView.as_view(routes=routes, namespace=app_name), name="schema")]
