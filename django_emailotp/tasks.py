"""Celery tasks. Thin: they carry a challenge id (never a code) and translate failures into retries."""

from __future__ import annotations

import random
import uuid
from typing import Any

from django_emailotp.conf import app_settings
from django_emailotp.exceptions import DeliveryError, DeliveryUnavailable, MissingDependency

try:
    from celery import shared_task
except ImportError as exc:  # pragma: no cover - exercised by the no-extras test in a subprocess
    raise MissingDependency("celery", "celery", 'EMAIL_OTP_DELIVERY = "celery"') from exc

from kombu.exceptions import OperationalError


def retry_countdown(retries: int) -> float:
    """Exponential backoff with full jitter: uniform in [base/2, min(max, base * 2**retries)]."""
    ceiling = min(app_settings.DELIVERY_RETRY_BACKOFF_MAX, app_settings.DELIVERY_RETRY_BACKOFF * 2**retries)
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not a secret


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True, name="emailotp.send_code")
def send_code_email(self, challenge_id: str) -> str:  # type: ignore[no-untyped-def]
    """Send the code email for one challenge; retried on transient failures with backoff and jitter.

    Safe to run twice (``acks_late`` redelivery): each run stores a new code's hash before sending, so only
    the newest code is ever valid, and a challenge that is no longer pending is not sent.
    """
    from django_emailotp import services

    final = self.request.retries >= app_settings.DELIVERY_MAX_RETRIES
    try:
        return str(services.deliver_challenge(challenge_id, final=final))
    except DeliveryError as exc:
        raise self.retry(exc=exc, countdown=retry_countdown(self.request.retries), max_retries=None) from exc


def enqueue_delivery(challenge_id: uuid.UUID) -> None:
    """Publish the send task; raise :class:`DeliveryUnavailable` quickly when the broker cannot be reached."""
    options: dict[str, Any] = {"retry": True, "retry_policy": app_settings.BROKER_RETRY_POLICY}
    if app_settings.CELERY_QUEUE:
        options["queue"] = app_settings.CELERY_QUEUE
    try:
        send_code_email.apply_async((str(challenge_id),), **options)
    except (OperationalError, OSError) as exc:
        raise DeliveryUnavailable(f"The message broker could not be reached: {exc}") from exc
