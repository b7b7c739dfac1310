"""Celery tasks. Thin: they carry ids and plain numbers only (SECURITY.md rule 22) and translate failures into
retries; the services decide what to send, when a delivery has failed for good, and what a redelivered message
may still do."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from django_emailotp.conf import app_settings
from django_emailotp.exceptions import DeliveryError, DeliveryUnavailable, MissingDependency

try:
    from celery import shared_task
except ImportError as exc:  # pragma: no cover - exercised by the no-extras test in a subprocess
    raise MissingDependency("celery", "celery", 'EMAIL_OTP_DELIVERY = "celery"') from exc

from kombu.exceptions import OperationalError

NOTICE_RETRIES = 5


# Celery's own autoretry_for / retry_backoff do not fit: they are fixed when the task is defined (our settings are
# read on each use), count whole seconds only (int(max(1, retry_backoff))) and jitter down to zero. The retry limit
# is the row's: deliver_challenge ends the delivery as failed on its last try, so max_retries is only a backstop.
@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True, name="emailotp.send_code")
def send_code_email(self, challenge_id: str, attempt: int | None = None) -> str:  # type: ignore[no-untyped-def]
    """Send the code email for one challenge; retried on transient failures with backoff and jitter.

    Safe to run twice (``acks_late`` redelivery, the sweep): the try numbered ``attempt`` is claimed on the row, so
    only one run sends it, and a challenge that is no longer pending is not sent.
    """
    from django_emailotp import services

    try:
        return str(services.deliver_challenge(challenge_id, final=False, attempt=attempt))
    except DeliveryError as exc:
        raise self.retry(
            args=(challenge_id, exc.attempt),
            exc=exc,
            countdown=exc.retry_in,
            max_retries=app_settings.DELIVERY_MAX_RETRIES,
        ) from exc


@shared_task(bind=True, acks_late=True, ignore_result=True, name="emailotp.send_notice")
def send_notice_email(self, notice_id: str) -> bool:  # type: ignore[no-untyped-def]
    """Send a stored security notice (no secrets inside); retried a few times if the mail server fails."""
    from django_emailotp.services import delivery, notices

    if notices.send_notice(notice_id):
        return True
    if not notices.notice_pending(notice_id):  # sent by an earlier run of this message
        return False
    raise self.retry(countdown=delivery.retry_delay(self.request.retries + 1), max_retries=NOTICE_RETRIES)


def _publish(task: Any, args: tuple[Any, ...]) -> None:
    """Publish with the short broker retry policy; raise :class:`DeliveryUnavailable` when the broker is down."""
    options: dict[str, Any] = {"retry": True, "retry_policy": app_settings.BROKER_RETRY_POLICY}
    if app_settings.CELERY_QUEUE:
        options["queue"] = app_settings.CELERY_QUEUE
    try:
        task.apply_async(args, **options)
    except (OperationalError, OSError) as exc:
        raise DeliveryUnavailable(f"The message broker could not be reached: {exc}") from exc


def enqueue_delivery(challenge_id: uuid.UUID, *, attempt: int) -> None:
    """Publish the send task: the challenge id and the number of tries so far, nothing else."""
    _publish(send_code_email, (str(challenge_id), attempt))


def enqueue_notice(notice_id: uuid.UUID) -> None:
    """Publish a notice task: the id of its ``Notice`` row, nothing else."""
    _publish(send_notice_email, (str(notice_id),))


@shared_task(ignore_result=True, name="emailotp.purge")
def purge_expired_records() -> dict[str, int | bool]:
    """Apply the retention settings; schedule it with celery beat (see docs/operators.md). Safe to run any time."""
    from django_emailotp import services

    return dataclasses.asdict(services.purge())


@shared_task(ignore_result=True, name="emailotp.sweep")
def sweep_deliveries() -> dict[str, int]:
    """Queue again the deliveries a worker or the broker lost; schedule it with celery beat every 30 seconds
    (see docs/delivery.md). Safe to run any time, from several places at once."""
    from django_emailotp import services

    return dataclasses.asdict(services.sweep_deliveries())
