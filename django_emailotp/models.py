"""Challenges (one code sent for one purpose) and the append-only audit trail."""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class ChallengeStatus(models.TextChoices):
    PENDING = "pending", _("pending")
    VERIFIED = "verified", _("verified")
    BURNED = "burned", _("burned after too many attempts")
    SUPERSEDED = "superseded", _("superseded by a newer code")
    EXPIRED = "expired", _("expired")


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", _("waiting to be sent")
    QUEUED = "queued", _("queued")
    SENT = "sent", _("sent")
    RETRYING = "retrying", _("retrying after a transient failure")
    FAILED = "failed", _("failed")
    SKIPPED = "skipped", _("not sent (challenge no longer pending)")
    DELIVERED = "delivered", _("delivered")
    DEFERRED = "deferred", _("deferred by the receiving server")
    BOUNCED = "bounced", _("bounced")
    REJECTED = "rejected", _("rejected")
    COMPLAINED = "complained", _("marked as spam")


class Challenge(models.Model):
    """One code sent to one address for one purpose. The code itself is never stored, only its keyed hash."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="emailotp_challenges",
    )
    email = models.EmailField(_("destination address"))
    purpose = models.CharField(_("purpose"), max_length=64)
    action = models.TextField(_("bound action"), blank=True, default="")
    context = models.JSONField(_("bound context"), default=dict, blank=True)
    # HMAC-SHA256 of (id, code); emptied once the code is used, burned, superseded or expired.
    code_hash = models.CharField(max_length=64, blank=True, default="", editable=False)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    expires_at = models.DateTimeField(_("expires"))
    consumed_at = models.DateTimeField(_("consumed"), null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(_("wrong attempts"), default=0)
    max_attempts = models.PositiveSmallIntegerField(_("attempt limit"))
    status = models.CharField(
        _("status"), max_length=16, choices=ChallengeStatus.choices, default=ChallengeStatus.PENDING
    )
    # Keyed hash of the session key or API credential the challenge was issued to; "" when issued unbound.
    binding = models.CharField(max_length=64, blank=True, default="", editable=False)
    delivery_status = models.CharField(
        _("delivery status"), max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    delivery_attempts = models.PositiveSmallIntegerField(_("delivery attempts"), default=0)
    sent_at = models.DateTimeField(_("sent"), null=True, blank=True)
    esp_message_id = models.CharField(_("ESP message id"), max_length=255, blank=True, default="")
    ip_address = models.GenericIPAddressField(_("IP address"), null=True, blank=True)
    user_agent = models.CharField(_("user agent"), max_length=512, blank=True, default="")

    class Meta:
        verbose_name = _("challenge")
        verbose_name_plural = _("challenges")
        ordering: ClassVar[list[str]] = ["-created_at"]
        indexes: ClassVar[list[models.Index]] = [
            # Supersede and cooldown look up the live challenge of a user (or an address) for a purpose.
            models.Index(
                fields=["user", "purpose", "binding"],
                condition=Q(status="pending"),
                name="emailotp_ch_live_user",
            ),
            models.Index(fields=["esp_message_id"], name="emailotp_ch_esp_id"),
            models.Index(fields=["created_at"], name="emailotp_ch_created"),
        ]
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(
                fields=["user", "purpose", "binding"],
                condition=Q(status="pending", user__isnull=False),
                name="emailotp_one_live_per_user",
            ),
            models.UniqueConstraint(
                fields=["email", "purpose", "binding"],
                condition=Q(status="pending", user__isnull=True),
                name="emailotp_one_live_per_address",
            ),
            models.CheckConstraint(condition=Q(attempts__lte=F("max_attempts")), name="emailotp_attempts_within_limit"),
            models.CheckConstraint(condition=Q(expires_at__gt=F("created_at")), name="emailotp_expires_after_created"),
            models.CheckConstraint(
                condition=~Q(status="verified") | Q(consumed_at__isnull=False),
                name="emailotp_verified_has_consumed_at",
            ),
            models.CheckConstraint(
                condition=Q(status="pending") | Q(code_hash=""),
                name="emailotp_hash_only_while_pending",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.purpose} challenge {self.id}"

    @property
    def is_expired(self) -> bool:
        return timezone.now() >= self.expires_at


class AuditEventType(models.TextChoices):
    CHALLENGE_ISSUED = "challenge_issued", _("code issued")
    RESEND_THROTTLED = "resend_throttled", _("resend refused during cooldown")
    CHALLENGE_SENT = "challenge_sent", _("code email sent")
    DELIVERY_RETRY = "delivery_retry", _("code email retried after a transient failure")
    DELIVERY_FAILED = "delivery_failed", _("code email failed")
    DELIVERY_UNAVAILABLE = "delivery_unavailable", _("delivery pipeline unreachable")
    VERIFY_SUCCEEDED = "verify_succeeded", _("code verified")
    VERIFY_FAILED = "verify_failed", _("code rejected")
    CHALLENGE_BURNED = "challenge_burned", _("code burned after too many attempts")
    STEP_UP_REQUIRED = "step_up_required", _("step-up required")
    STEP_UP_GRANTED = "step_up_granted", _("step-up granted")
    STEP_UP_USED = "step_up_used", _("single-use step-up grant used")
    STEP_UP_REVOKED = "step_up_revoked", _("step-up grants revoked")


class AuditOutcome(models.TextChoices):
    SUCCESS = "success", _("success")
    FAILURE = "failure", _("failure")
    INFO = "info", _("information")


class AppendOnlyError(Exception):
    """Audit events are never changed or deleted through the ORM's normal paths."""


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    def update(self, **kwargs: Any) -> int:
        raise AppendOnlyError("Audit events are append-only; they cannot be updated.")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("Audit events are append-only; they cannot be deleted.")


class AuditEvent(models.Model):
    """One append-only row per security-relevant step (SECURITY.md rule 14). Times are UTC."""

    created_at = models.DateTimeField(_("time"), default=timezone.now, db_index=True)
    event = models.CharField(_("event"), max_length=32, choices=AuditEventType.choices)
    outcome = models.CharField(_("outcome"), max_length=8, choices=AuditOutcome.choices)
    reason = models.CharField(_("reason"), max_length=32, blank=True, default="")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    purpose = models.CharField(_("purpose"), max_length=64, blank=True, default="")
    # Not a foreign key: challenges are purged long before their audit rows.
    challenge_id = models.UUIDField(_("challenge"), null=True, blank=True, db_index=True)
    email_pseudonym = models.CharField(_("pseudonymised address"), max_length=24, blank=True, default="")
    session_hash = models.CharField(_("session hash"), max_length=64, blank=True, default="")
    ip_address = models.GenericIPAddressField(_("IP address"), null=True, blank=True)
    user_agent = models.CharField(_("user agent"), max_length=512, blank=True, default="")
    data = models.JSONField(_("details"), default=dict, blank=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        verbose_name = _("audit event")
        verbose_name_plural = _("audit events")
        ordering: ClassVar[list[str]] = ["-created_at", "-id"]
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["event", "created_at"], name="emailotp_ae_event_time"),
            models.Index(fields=["user", "created_at"], name="emailotp_ae_user_time"),
        ]

    def __str__(self) -> str:
        return f"{self.get_event_display()} at {self.created_at:%Y-%m-%d %H:%M:%S} UTC"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnlyError("Audit events are append-only; an existing event cannot be saved again.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("Audit events are append-only; they cannot be deleted.")


class StepUpGrant(models.Model):
    """Proof that a user confirmed a code for a purpose, in one session (or for one API credential).

    Valid while not expired, consumed or revoked, only for the same binding, and only while the user's password
    is unchanged (``auth_hash``). Grants are working state, not history: the audit trail keeps the history.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="emailotp_step_up_grants")
    purpose = models.CharField(_("purpose"), max_length=64)
    binding = models.CharField(max_length=64, editable=False)
    # Keyed hash of user.get_session_auth_hash(): a password change invalidates every grant.
    auth_hash = models.CharField(max_length=64, editable=False)
    challenge_id = models.UUIDField(_("challenge"), null=True, blank=True)
    verified_at = models.DateTimeField(_("window starts"))
    expires_at = models.DateTimeField(_("expires"))
    consumed_at = models.DateTimeField(_("consumed"), null=True, blank=True)

    class Meta:
        verbose_name = _("step-up grant")
        verbose_name_plural = _("step-up grants")
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["user", "purpose", "binding"], name="emailotp_grant_lookup"),
            models.Index(fields=["expires_at"], name="emailotp_grant_expiry"),
        ]
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(fields=["user", "purpose", "binding"], name="emailotp_one_grant_per_binding"),
            models.CheckConstraint(condition=Q(expires_at__gt=F("verified_at")), name="emailotp_grant_expires_later"),
        ]

    def __str__(self) -> str:
        return f"{self.purpose} grant for user {self.user_id}"
