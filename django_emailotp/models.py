"""Challenges (one code sent for one purpose) and the append-only audit trail."""

from __future__ import annotations

import uuid
from datetime import datetime
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
    # The outbox lease: while the delivery is queued or retrying, the time after which nothing finished it and the
    # sweep (services.sweep_deliveries) may take it over. Null once the delivery has an outcome.
    delivery_deadline = models.DateTimeField(_("delivery deadline"), null=True, blank=True)
    # The class of the last send error ("SMTPServerDisconnected"); the audit rows keep the message.
    delivery_error = models.CharField(_("last delivery error"), max_length=100, blank=True, default="")
    # False for a sign-in asked for an unknown address: the same rows and work, but no email goes out.
    send_email = models.BooleanField(_("email wanted"), default=True)
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
            # The sweep looks for deliveries whose lease ran out.
            models.Index(
                fields=["delivery_deadline"],
                condition=Q(delivery_status__in=["queued", "retrying"], status="pending"),
                name="emailotp_ch_outbox",
            ),
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


class Notice(models.Model):
    """A security notice waiting to be emailed: the outbox row its task reads by id (SECURITY.md rule 22).

    The details (the replaced address, the IP address of a lockout, ...) stay in the database, never in a broker
    message. The row is deleted once the notice is sent; the purge deletes any left after the challenge retention.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", verbose_name=_("user")
    )
    kind = models.CharField(_("kind"), max_length=32)
    # An explicit recipient (the address an email change replaced); blank: the user's address when it is sent.
    recipient = models.EmailField(_("recipient"), blank=True, default="")
    context = models.JSONField(_("details"), default=dict, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("security notice")
        verbose_name_plural = _("security notices")

    def __str__(self) -> str:
        return f"{self.kind} notice {self.id}"


class AuditEventType(models.TextChoices):
    CHALLENGE_ISSUED = "challenge_issued", _("code issued")
    RESEND_THROTTLED = "resend_throttled", _("resend refused during cooldown")
    CHALLENGE_SENT = "challenge_sent", _("code email sent")
    DELIVERY_RETRY = "delivery_retry", _("code email retried after a transient failure")
    DELIVERY_FAILED = "delivery_failed", _("code email failed")
    DELIVERY_UNAVAILABLE = "delivery_unavailable", _("delivery pipeline unreachable")
    DELIVERY_REDISPATCHED = "delivery_redispatched", _("code email queued again by the delivery sweep")
    VERIFY_SUCCEEDED = "verify_succeeded", _("code verified")
    VERIFY_FAILED = "verify_failed", _("code rejected")
    CHALLENGE_BURNED = "challenge_burned", _("code burned after too many attempts")
    STEP_UP_REQUIRED = "step_up_required", _("step-up required")
    STEP_UP_GRANTED = "step_up_granted", _("step-up granted")
    STEP_UP_USED = "step_up_used", _("single-use step-up grant used")
    STEP_UP_REVOKED = "step_up_revoked", _("step-up grants revoked")
    RATE_LIMITED = "rate_limited", _("request refused by a rate limit")
    LOCKED_OUT = "locked_out", _("email-code path locked after wrong codes")
    LOCKOUT_LIFTED = "lockout_lifted", _("lockout lifted")
    DELIVERY_STATUS = "delivery_status", _("delivery status reported by the ESP")
    NOTICE_SENT = "notice_sent", _("security notice emailed to the user")
    BACKUP_CODES_GENERATED = "backup_codes_generated", _("backup codes generated")
    BACKUP_CODE_USED = "backup_code_used", _("backup code used")
    BACKUP_CODE_FAILED = "backup_code_failed", _("backup code rejected")
    SECOND_FACTOR_REQUIRED = "second_factor_required", _("password accepted, second factor asked for")
    LOGIN_COMPLETED = "login_completed", _("signed in after the second factor")
    SECOND_FACTOR_CHANGED = "second_factor_changed", _("second factor turned on or off")
    TRUSTED_DEVICE_ADDED = "trusted_device_added", _("browser remembered")
    TRUSTED_DEVICE_REMOVED = "trusted_device_removed", _("remembered browser forgotten")
    SIGN_IN_REQUESTED = "sign_in_requested", _("sign-in code requested")
    SIGN_IN_COMPLETED = "sign_in_completed", _("signed in with a code")
    EMAIL_VERIFIED = "email_verified", _("email address verified")
    EMAIL_CHANGED = "email_changed", _("email address changed")


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

    # Retention (services.purge) is the one sanctioned way rows change: narrowly named, on a plain QuerySet.

    def _plain(self) -> models.QuerySet[AuditEvent]:
        """The same rows through Django's own QuerySet, whose update and delete are not refused."""
        return models.QuerySet(self.model, query=self.query.chain(), using=self._db)  # type: ignore[attr-defined]

    def with_personal_data_before(self, cutoff: datetime) -> AuditEventQuerySet:
        """Rows created before ``cutoff`` that still hold an IP address or a user agent."""
        return self.filter(created_at__lt=cutoff).exclude(ip_address__isnull=True, user_agent="")

    def strip_personal_data_before(self, cutoff: datetime) -> int:
        """Retention: null the IP address and empty the user agent of rows created before ``cutoff``."""
        return self.with_personal_data_before(cutoff)._plain().update(ip_address=None, user_agent="")

    def purge_older_than(self, cutoff: datetime) -> int:
        """Retention: delete the rows created before ``cutoff`` (nothing references them)."""
        rows = self.filter(created_at__lt=cutoff)._plain()
        return int(rows._raw_delete(rows.db))


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
    # Keyed hash of the bound action the code confirmed ("Send 500 EUR to ACME Ltd"); blank for a plain grant.
    action_digest = models.CharField(max_length=64, blank=True, default="", editable=False)

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


class LockoutScope(models.TextChoices):
    """The path a lockout counts and locks: a wrong code counts only toward its own path, and only it is refused."""

    STEP_UP = "step_up", _("step-up and email verification (signed in)")
    LOGIN = "login", _("second factor after the password")
    SIGN_IN = "sign_in", _("sign-in by code (anonymous, by address)")


class Lockout(models.Model):
    """A user's wrong-code count on one path and, past ``EMAIL_OTP_LOCKOUT_THRESHOLD``, the lock on that path.

    One row per user and scope, counted with conditional UPDATEs so concurrent failures lock exactly once. A lockout
    blocks issuing and verifying email codes on its own path only, never login or the rest of the site, and always
    ends. Wrong codes on a challenge an anonymous requester asked for (sign-in) count toward ``sign_in`` only, so a
    stranger can never lock the owner's signed-in step-up or the second factor that the right password leads to.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="emailotp_lockouts", verbose_name=_("user")
    )
    scope = models.CharField(_("path"), max_length=16, choices=LockoutScope.choices, default=LockoutScope.STEP_UP)
    consecutive_failures = models.PositiveIntegerField(_("wrong codes in a row"), default=0)
    lock_count = models.PositiveIntegerField(_("times locked"), default=0)
    locked_until = models.DateTimeField(_("locked until"), null=True, blank=True, db_index=True)
    last_failure_at = models.DateTimeField(_("last wrong code"), null=True, blank=True)
    unlocked_at = models.DateTimeField(_("lifted"), null=True, blank=True)
    unlocked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("lifted by"),
    )

    class Meta:
        verbose_name = _("lockout")
        verbose_name_plural = _("lockouts")
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(fields=["user", "scope"], name="emailotp_one_lockout_per_scope"),
        ]

    def __str__(self) -> str:
        return f"{self.scope} lockout of user {self.user_id}"

    def is_active(self, now: datetime | None = None) -> bool:
        return self.locked_until is not None and self.locked_until > (now or timezone.now())


class BackupCode(models.Model):
    """One single-use backup code: an argon2id hash and a short keyed lookup tag, never the code itself."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="emailotp_backup_codes", verbose_name=_("user")
    )
    lookup = models.CharField(max_length=8, editable=False)
    code_hash = models.CharField(max_length=128, editable=False)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    used_at = models.DateTimeField(_("used"), null=True, blank=True)

    class Meta:
        verbose_name = _("backup code")
        verbose_name_plural = _("backup codes")
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["user", "lookup"], name="emailotp_backup_lookup"),
        ]

    def __str__(self) -> str:
        return f"backup code of user {self.user_id}"


class SecondFactor(models.Model):
    """A user's own choice to be asked for an email code after the password (``EMAIL_OTP_LOGIN_POLICY``)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="emailotp_second_factor",
        verbose_name=_("user"),
    )
    enabled = models.BooleanField(_("second factor on"), default=False)
    changed_at = models.DateTimeField(_("changed"), default=timezone.now)

    class Meta:
        verbose_name = _("second factor setting")
        verbose_name_plural = _("second factor settings")

    def __str__(self) -> str:
        return f"second factor of user {self.user_id}: {'on' if self.enabled else 'off'}"


class TrustedDevice(models.Model):
    """A browser the user chose to remember: the second factor is skipped there until it expires or is revoked.

    The cookie holds a random token; only its keyed hash is stored. A password change revokes it (``auth_hash``).
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="emailotp_trusted_devices",
        verbose_name=_("user"),
    )
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    auth_hash = models.CharField(max_length=64, editable=False)
    label = models.CharField(_("device"), max_length=100, blank=True, default="")
    ip_address = models.GenericIPAddressField(_("IP address"), null=True, blank=True)
    created_at = models.DateTimeField(_("remembered"), default=timezone.now)
    expires_at = models.DateTimeField(_("expires"))
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True)

    class Meta:
        verbose_name = _("remembered browser")
        verbose_name_plural = _("remembered browsers")
        ordering: ClassVar[list[str]] = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.label or 'browser'} of user {self.user_id}"


class VerifiedEmail(models.Model):
    """An address a user proved they control with a code (``email_verified`` signal tells the project)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="emailotp_verified_emails",
        verbose_name=_("user"),
    )
    email = models.EmailField(_("address"))
    verified_at = models.DateTimeField(_("verified"), default=timezone.now)

    class Meta:
        verbose_name = _("verified address")
        verbose_name_plural = _("verified addresses")
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(fields=["user", "email"], name="emailotp_verified_email_once"),
        ]

    def __str__(self) -> str:
        return self.email
