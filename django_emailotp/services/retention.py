"""Retention: applying the settings that say how long challenges, grants, remembered browsers and audit rows live.

Deletes ``Challenge``, ``StepUpGrant``, ``TrustedDevice``, unsent ``Notice`` and old ``AuditEvent`` rows; strips IP
and user agent from audit rows past the personal-data window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from django_emailotp.conf import app_settings
from django_emailotp.models import AuditEvent, Challenge, ChallengeStatus, Notice, StepUpGrant, TrustedDevice
from django_emailotp.services.common import logger


@dataclass(frozen=True)
class PurgeReport:
    """What one :func:`purge` run did (or, with ``dry_run``, would do). Running it again right after counts zeros."""

    challenges_expired: int = 0
    challenges_deleted: int = 0
    grants_deleted: int = 0
    trusted_devices_deleted: int = 0
    notices_deleted: int = 0
    audit_events_stripped: int = 0
    audit_events_deleted: int = 0
    dry_run: bool = False

    @property
    def total(self) -> int:
        return (
            self.challenges_expired
            + self.challenges_deleted
            + self.grants_deleted
            + self.trusted_devices_deleted
            + self.notices_deleted
            + self.audit_events_stripped
            + self.audit_events_deleted
        )


def purge(now: datetime | None = None, *, dry_run: bool = False) -> PurgeReport:
    """Apply the retention settings (``manage.py emailotp_purge`` and the ``emailotp.purge`` task call this).

    - pending challenges past their expiry: code hash wiped, status ``expired``;
    - challenges more than ``EMAIL_OTP_CHALLENGE_RETENTION`` seconds past their expiry: deleted;
    - step-up grants past their expiry: deleted;
    - remembered browsers (trusted devices) past their expiry: deleted;
    - security notices never sent, more than ``EMAIL_OTP_CHALLENGE_RETENTION`` seconds old: deleted;
    - audit rows older than ``EMAIL_OTP_AUDIT_PII_RETENTION_DAYS``: IP address and user agent removed;
    - audit rows older than ``EMAIL_OTP_AUDIT_RETENTION_DAYS``: deleted.

    Each step only touches rows it has not handled before, so a second run changes nothing more.
    """
    now = now or timezone.now()
    challenge_cutoff = now - timedelta(seconds=app_settings.CHALLENGE_RETENTION)
    old_challenges = Challenge.objects.filter(expires_at__lt=challenge_cutoff)
    stale_pending = Challenge.objects.filter(
        status=ChallengeStatus.PENDING, expires_at__lte=now, expires_at__gte=challenge_cutoff
    )
    expired_grants = StepUpGrant.objects.filter(expires_at__lte=now)
    expired_devices = TrustedDevice.objects.filter(expires_at__lte=now)  # valid only while expires_at > now
    unsent_notices = Notice.objects.filter(created_at__lt=challenge_cutoff)  # sent ones are deleted at once
    audit_cutoff = now - timedelta(days=app_settings.AUDIT_RETENTION_DAYS)
    pii_cutoff = now - timedelta(days=app_settings.AUDIT_PII_RETENTION_DAYS)
    events = AuditEvent.objects.filter(created_at__gte=audit_cutoff)
    if dry_run:
        return PurgeReport(
            challenges_expired=stale_pending.count(),
            challenges_deleted=old_challenges.count(),
            grants_deleted=expired_grants.count(),
            trusted_devices_deleted=expired_devices.count(),
            notices_deleted=unsent_notices.count(),
            audit_events_stripped=events.with_personal_data_before(pii_cutoff).count(),
            audit_events_deleted=AuditEvent.objects.filter(created_at__lt=audit_cutoff).count(),
            dry_run=True,
        )
    with transaction.atomic():
        _deleted, per_model = old_challenges.delete()
        report = PurgeReport(
            challenges_expired=stale_pending.update(status=ChallengeStatus.EXPIRED, code_hash=""),
            challenges_deleted=per_model.get(Challenge._meta.label, 0),
            grants_deleted=expired_grants.delete()[1].get(StepUpGrant._meta.label, 0),
            trusted_devices_deleted=expired_devices.delete()[1].get(TrustedDevice._meta.label, 0),
            notices_deleted=unsent_notices.delete()[1].get(Notice._meta.label, 0),
            audit_events_deleted=AuditEvent.objects.purge_older_than(audit_cutoff),
            audit_events_stripped=events.strip_personal_data_before(pii_cutoff),
        )
    if report.total:
        logger.info("emailotp: purge %s", report)
    return report
