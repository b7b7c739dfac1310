"""The outbox sweep: deliveries that a queue lost (a worker killed mid-send, a message dropped by the broker, a web
process that died between commit and publish) are handed to the queue again while their code can still be used.

The challenge row is the source of truth. A queued or retrying delivery carries a deadline (its lease); past it,
and while the code has not expired, :func:`sweep_deliveries` claims the row with a conditional ``UPDATE`` on the
deadline and the number of tries, so of two sweeps at once exactly one takes each row, and publishes it again
with that number of tries. The worker claims the try in turn (``delivery.deliver_challenge``), so a late worker
holding the lost message and the sweep's message never both send. A delivery that has used all its tries is
ended as ``failed`` instead. Writes ``delivery_redispatched`` and ``delivery_failed`` audit rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from django_emailotp import audit, signals
from django_emailotp.conf import app_settings
from django_emailotp.exceptions import DeliveryUnavailable
from django_emailotp.models import AuditEventType, AuditOutcome, Challenge, ChallengeStatus, DeliveryStatus
from django_emailotp.services import dispatch
from django_emailotp.services.common import logger

UNFINISHED = (DeliveryStatus.QUEUED, DeliveryStatus.RETRYING)
# Rows one sweep looks at; the next run (every minute or so) takes the rest.
SWEEP_BATCH = 500
# The error recorded when a delivery's last try never reported back.
WORKER_LOST = "WorkerLost"


@dataclass(frozen=True)
class SweepReport:
    """What one :func:`sweep_deliveries` run did. ``unavailable``: claimed, but the queue refused them (the next
    sweep tries again once their new lease has run out)."""

    redispatched: int = 0
    failed: int = 0
    unavailable: int = 0

    @property
    def total(self) -> int:
        return self.redispatched + self.failed + self.unavailable


def stuck_deliveries(now: datetime | None = None) -> list[Challenge]:
    """Challenges whose delivery is queued or retrying past its deadline while their code could still be used."""
    now = now or timezone.now()
    rows = Challenge.objects.filter(
        status=ChallengeStatus.PENDING,
        send_email=True,
        delivery_status__in=UNFINISHED,
        delivery_deadline__lte=now,
        expires_at__gt=now,
    ).order_by("delivery_deadline")
    return list(rows.only("id", "user_id", "email", "purpose", "delivery_attempts", "delivery_deadline")[:SWEEP_BATCH])


def sweep_deliveries(now: datetime | None = None) -> SweepReport:
    """Hand every stuck delivery to the queue again, once (``manage.py emailotp_sweep`` and the ``emailotp.sweep``
    task call this; safe to run any time and from several places at once). Does nothing in ``"sync"`` mode."""
    queue = dispatch.queue()
    if queue is None:
        return SweepReport()
    now = now or timezone.now()
    redispatched = failed = unavailable = 0
    for challenge in stuck_deliveries(now):
        tries = challenge.delivery_attempts
        exhausted = tries > app_settings.DELIVERY_MAX_RETRIES
        claimed = Challenge.objects.filter(
            pk=challenge.pk,
            status=ChallengeStatus.PENDING,
            delivery_status__in=UNFINISHED,
            delivery_attempts=tries,
            delivery_deadline=challenge.delivery_deadline,
        ).update(
            delivery_status=DeliveryStatus.FAILED if exhausted else DeliveryStatus.QUEUED,
            delivery_deadline=None if exhausted else now + timedelta(seconds=app_settings.DELIVERY_LEASE),
            **({"delivery_error": WORKER_LOST} if exhausted else {}),
        )
        if not claimed:  # another sweep, or the worker, got there first
            continue
        if exhausted:
            _record_abandoned(challenge, tries)
            failed += 1
            continue
        audit.record(
            AuditEventType.DELIVERY_REDISPATCHED,
            AuditOutcome.INFO,
            challenge=challenge,
            reason="lease_expired",
            data={"attempts": tries},
        )
        try:
            queue.enqueue_delivery(challenge.pk, attempt=tries)
        except DeliveryUnavailable as exc:
            logger.error("emailotp: the sweep could not queue challenge %s again: %s", challenge.pk, exc)
            unavailable += 1
            continue
        redispatched += 1
    report = SweepReport(redispatched=redispatched, failed=failed, unavailable=unavailable)
    if report.total:
        logger.warning("emailotp: delivery sweep %s", report)
    return report


def _record_abandoned(challenge: Challenge, tries: int) -> None:
    """Every try was used and the last one never reported back (its worker died): the delivery has failed."""
    audit.record(
        AuditEventType.DELIVERY_FAILED,
        AuditOutcome.FAILURE,
        challenge=challenge,
        reason="abandoned",
        data={"attempts": tries},
    )
    signals.challenge_delivery_failed.send(
        sender=Challenge, challenge=challenge, error=WORKER_LOST, transient=True, final=True
    )
