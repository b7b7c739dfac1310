"""Public signals, sent with ``sender=Challenge`` (``step_up_*``: ``sender=StepUpGrant``) and the arguments listed.

Receivers run in the caller's thread after the database work is done; an exception in a receiver propagates.
"""

from __future__ import annotations

from django.dispatch import Signal

# challenge: Challenge, request: HttpRequest | None
challenge_issued = Signal()
# challenge: Challenge, message_id: str (ESP message id, "" when the backend gives none)
challenge_sent = Signal()
# challenge: Challenge, error: str, transient: bool, final: bool (no retry follows)
challenge_delivery_failed = Signal()
# challenge: Challenge, request: HttpRequest | None
challenge_verified = Signal()
# challenge: Challenge | None (None when the id is unknown), reason: VerifyReason, request: HttpRequest | None
challenge_failed = Signal()
# challenge: Challenge, request: HttpRequest | None
challenge_burned = Signal()
# user, purpose: str, grant: StepUpGrant, request: HttpRequest | None
step_up_granted = Signal()
# user (may be anonymous), purpose: str, path: str, request: HttpRequest
step_up_required = Signal()
# user, locked_until: datetime, request: HttpRequest | None   (sender=Lockout)
user_locked_out = Signal()
# user, by: the staff user who lifted it or None (command), request: HttpRequest | None   (sender=Lockout)
lockout_lifted = Signal()
# challenge: Challenge (its delivery_status as now stored), status: DeliveryStatus (what the ESP reported),
# event: str (anymail's event type: "delivered", "bounced", ...), esp_name: str ("Postmark", "Mailgun", ...)
challenge_delivery_status = Signal()
# user, email: str (the address now verified), previous_email: str | None (the replaced address when it was a
# change, else None), request: HttpRequest | None   (sender=VerifiedEmail)
email_verified = Signal()
