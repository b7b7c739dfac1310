from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from django_emailotp.api.errors import ErrorCode
from django_emailotp.crypto import MAX_RAW_CODE_LENGTH


class StrictCharField(serializers.CharField):
    """A string and nothing else: DRF's CharField would turn 123456 or true into text."""

    default_error_messages = {"invalid": _("Must be a string.")}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class ChallengeCreateSerializer(serializers.Serializer):
    purpose = StrictCharField(
        max_length=64,
        help_text="step_up, a purpose registered in EMAIL_OTP_PURPOSES, or sign_in (when EMAIL_OTP_SIGN_IN_ENABLED).",
    )
    email = StrictCharField(
        max_length=254,
        required=False,
        help_text="sign_in only: the address to sign in with. The answer is the same whether or not it has an account.",
    )
    action = StrictCharField(
        max_length=500,
        required=False,
        help_text='Step-up only: the action this code confirms ("Send 500 EUR to ACME Ltd"). The email shows it, '
        "and the grant satisfies only views that require this exact action.",
    )


class CodeSerializer(serializers.Serializer):
    code = StrictCharField(
        max_length=MAX_RAW_CODE_LENGTH,
        trim_whitespace=False,
        help_text="The code from the email; spaces and hyphens are ignored, only ASCII digits count.",
    )


class ChallengeSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    purpose = serializers.CharField()
    expires_at = serializers.DateTimeField()
    resend_available_at = serializers.DateTimeField()
    email_hint = serializers.CharField(help_text="The destination, masked: j***@example.com.")


class VerifiedSerializer(serializers.Serializer):
    verified = serializers.BooleanField()
    purpose = serializers.CharField()
    step_up_expires_at = serializers.DateTimeField(allow_null=True)
    token = serializers.CharField(
        required=False,
        help_text="sign_in only, when EMAIL_OTP_API_SIGN_IN_TOKEN is on: a DRF token (Authorization: Token <token>).",
    )


class LoginSerializer(serializers.Serializer):
    username = StrictCharField(max_length=254, help_text="The value of the user model's USERNAME_FIELD.")
    password = StrictCharField(max_length=4096, trim_whitespace=False)


class LoginChallengeSerializer(ChallengeSerializer):
    second_factor_required = serializers.BooleanField(help_text="Always true: send the emailed code to login/verify/.")


class LoggedInSerializer(serializers.Serializer):
    logged_in = serializers.BooleanField()
    token = serializers.CharField(
        required=False,
        help_text="When EMAIL_OTP_API_SIGN_IN_TOKEN is on: a DRF token (Authorization: Token <token>).",
    )


class LoginBackupCodeSerializer(serializers.Serializer):
    code = StrictCharField(max_length=64, trim_whitespace=False, help_text="A backup code, e.g. ABCDE-FGHJK.")


class EmailRequestSerializer(serializers.Serializer):
    email = StrictCharField(
        max_length=254, required=False, help_text="The address to verify; required for a change. Default: yours."
    )
    change = serializers.BooleanField(
        default=False, help_text="Make the verified address the account's address (needs a fresh step-up)."
    )


class EmailVerifiedSerializer(serializers.Serializer):
    verified = serializers.BooleanField()
    email = serializers.EmailField()
    changed = serializers.BooleanField(help_text="Whether the account's address is now this one.")


class BackupCodeSerializer(serializers.Serializer):
    code = StrictCharField(max_length=64, trim_whitespace=False, help_text="A backup code, e.g. ABCDE-FGHJK.")
    purpose = StrictCharField(max_length=64, required=False, default="step_up")


class BackupCodeVerifiedSerializer(VerifiedSerializer):
    token = None  # type: ignore[assignment]  # step-up only: never a sign-in token here
    backup_codes_remaining = serializers.IntegerField()


class BackupCodeSetSerializer(serializers.Serializer):
    codes = serializers.ListField(child=serializers.CharField(), help_text="Shown this once; never retrievable.")
    remaining = serializers.IntegerField()


class BackupCodeCountSerializer(serializers.Serializer):
    remaining = serializers.IntegerField()


class StepUpStatusSerializer(serializers.Serializer):
    verified = serializers.BooleanField()
    expires_at = serializers.DateTimeField(allow_null=True)
    max_age = serializers.IntegerField()


class ErrorSerializer(serializers.Serializer):
    error = serializers.ChoiceField(
        choices=[str(code) for code in ErrorCode],
        help_text="A stable machine code; see the API guide. step_up_required comes from views protected with "
        "StepUpRequired, the step_up_required decorator or EMAIL_OTP_PROTECTED_URLS.",
    )
    message = serializers.CharField(help_text="A human-readable, translated explanation.")
    attempts_remaining = serializers.IntegerField(required=False)
    retry_after = serializers.IntegerField(required=False, help_text="Seconds; also in the Retry-After header.")
    field_errors = serializers.DictField(required=False, help_text="Field errors of a malformed request.")
    purpose = serializers.CharField(required=False)
    max_age = serializers.IntegerField(required=False)
    challenge_url = serializers.CharField(required=False)
