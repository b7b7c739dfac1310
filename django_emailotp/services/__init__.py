"""The domain: the rules of every flow, as plain functions (no HTTP, no Celery). One module per flow:

- ``challenges``: issuing and resending codes, the cooldown and the send limits;
- ``delivery``: handing the email to the queue or sending it in-process, generating the code at send time;
- ``outbox``: the sweep that queues again the deliveries a worker or the broker lost;
- ``tracking``: what the ESP reports about a sent email;
- ``verification``: checking and consuming a code, race-safe;
- ``grants``: step-up grants (windows, single use, actions, revocation);
- ``lockouts``: wrong codes across challenges, locking and lifting;
- ``backup_codes``: making, spending and stepping up with backup codes;
- ``login``: the second factor at login and remembered browsers;
- ``sign_in``: passwordless sign-in;
- ``email_change``: email verification and change;
- ``retention``: purging what the retention settings say has lived long enough;
- ``notices``: the security notices the flows email; ``dispatch``: the one port to the background queue;
  ``common``: small shared helpers.

Views, API views, middleware, admin actions, commands and tasks call these and only translate between their world
and them. This module re-exports exactly the public names docs/services.md documents.
"""

from __future__ import annotations

from django_emailotp.services.backup_codes import (
    BackupCodeReason,
    BackupCodeResult,
    backup_codes_remaining,
    complete_step_up_with_backup_code,
    regenerate_backup_codes,
    use_backup_code,
)
from django_emailotp.services.challenges import (
    destination_for,
    issue_challenge,
    live_challenge_for,
    resend_available_in,
    resend_challenge,
)
from django_emailotp.services.delivery import deliver_challenge, dispatch_delivery, wait_for_background_sends
from django_emailotp.services.email_change import (
    EmailConfirmation,
    confirm_email,
    email_verified,
    latest_email_verification,
    request_email_verification,
)
from django_emailotp.services.grants import (
    StepUpRequirement,
    complete_step_up,
    find_step_up_grant,
    grant_step_up,
    record_step_up_required,
    revoke_step_up_grants,
    use_step_up_grant,
)
from django_emailotp.services.lockouts import active_lockout, ensure_not_locked_out, lift_lockout, lockout_duration
from django_emailotp.services.login import (
    LOGIN_SESSION_KEY,
    PendingLogin,
    begin_login,
    cancel_login,
    complete_login,
    complete_login_with_backup_code,
    forget_device,
    is_trusted_device,
    pending_login,
    remember_device,
    resend_login_code,
    second_factor_choice_allowed,
    second_factor_enabled,
    second_factor_needed,
    second_factor_required,
    set_second_factor,
    trusted_devices,
)
from django_emailotp.services.outbox import SweepReport, sweep_deliveries
from django_emailotp.services.retention import PurgeReport, purge
from django_emailotp.services.sign_in import SignInResult, complete_sign_in, request_sign_in
from django_emailotp.services.tracking import record_delivery_event
from django_emailotp.services.verification import VerificationResult, VerifyReason, verify_challenge

__all__ = [
    "LOGIN_SESSION_KEY",
    "BackupCodeReason",
    "BackupCodeResult",
    "EmailConfirmation",
    "PendingLogin",
    "PurgeReport",
    "SignInResult",
    "StepUpRequirement",
    "SweepReport",
    "VerificationResult",
    "VerifyReason",
    "active_lockout",
    "backup_codes_remaining",
    "begin_login",
    "cancel_login",
    "complete_login",
    "complete_login_with_backup_code",
    "complete_sign_in",
    "complete_step_up",
    "complete_step_up_with_backup_code",
    "confirm_email",
    "deliver_challenge",
    "destination_for",
    "dispatch_delivery",
    "email_verified",
    "ensure_not_locked_out",
    "find_step_up_grant",
    "forget_device",
    "grant_step_up",
    "is_trusted_device",
    "issue_challenge",
    "latest_email_verification",
    "lift_lockout",
    "live_challenge_for",
    "lockout_duration",
    "pending_login",
    "purge",
    "record_delivery_event",
    "record_step_up_required",
    "regenerate_backup_codes",
    "remember_device",
    "request_email_verification",
    "request_sign_in",
    "resend_available_in",
    "resend_challenge",
    "resend_login_code",
    "revoke_step_up_grants",
    "second_factor_choice_allowed",
    "second_factor_enabled",
    "second_factor_needed",
    "second_factor_required",
    "set_second_factor",
    "sweep_deliveries",
    "trusted_devices",
    "use_backup_code",
    "use_step_up_grant",
    "verify_challenge",
    "wait_for_background_sends",
]
