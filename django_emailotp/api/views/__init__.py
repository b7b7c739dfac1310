"""The API views, a module per flow: thin translations between JSON and services. Errors: see ``api.errors``;
the OpenAPI documentation of each operation: ``api.docs``."""

from __future__ import annotations

from django_emailotp.api.views.backup_codes import BackupCodesView
from django_emailotp.api.views.base import EmailOTPAPIView, StrictJSONParser
from django_emailotp.api.views.challenges import ChallengeCreateView, ChallengeResendView, ChallengeVerifyView
from django_emailotp.api.views.email import EmailVerifyView, EmailView
from django_emailotp.api.views.login import LoginBackupCodeView, LoginVerifyView, LoginView
from django_emailotp.api.views.step_up import BackupCodeStepUpView, StepUpStatusView

__all__ = [
    "BackupCodeStepUpView",
    "BackupCodesView",
    "ChallengeCreateView",
    "ChallengeResendView",
    "ChallengeVerifyView",
    "EmailOTPAPIView",
    "EmailVerifyView",
    "EmailView",
    "LoginBackupCodeView",
    "LoginVerifyView",
    "LoginView",
    "StepUpStatusView",
    "StrictJSONParser",
]
