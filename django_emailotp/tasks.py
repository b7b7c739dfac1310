"""Celery tasks. Thin: they carry a challenge id (never a code) and translate failures into retries."""

from __future__ import annotations

import dataclasses
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


@shared_task(
    bind=True, acks_late=True, ignore_result=True, name="emailotp.send_notice", max_retries=5, default_retry_delay=30
)
def send_notice_email(self, kind: str, user_id: object, context: dict[str, str | int], to: str | None = None) -> bool:  # type: ignore[no-untyped-def]
    """Send a security notice (no secrets inside); retried a few times if the mail server fails."""
    from django_emailotp.services import notices

    if not notices.send_notice(kind, user_id, context, to=to):
        raise self.retry(countdown=retry_countdown(self.request.retries))
    return True


def _publish(task: Any, args: tuple[Any, ...]) -> None:
    """Publish with the short broker retry policy; raise :class:`DeliveryUnavailable` when the broker is down."""
    options: dict[str, Any] = {"retry": True, "retry_policy": app_settings.BROKER_RETRY_POLICY}
    if app_settings.CELERY_QUEUE:
        options["queue"] = app_settings.CELERY_QUEUE
    try:
        task.apply_async(args, **options)
    except (OperationalError, OSError) as exc:
        raise DeliveryUnavailable(f"The message broker could not be reached: {exc}") from exc


def enqueue_delivery(challenge_id: uuid.UUID) -> None:
    """Publish the send task (only the challenge id travels); raise :class:`DeliveryUnavailable` quickly."""
    _publish(send_code_email, (str(challenge_id),))


def enqueue_notice(kind: str, user_id: object, context: dict[str, str | int], *, to: str | None = None) -> None:
    """Publish a notice task (kind, user id, plain strings and an explicit recipient if any; never a secret)."""
    _publish(send_notice_email, (kind, user_id, context, to))


@shared_task(ignore_result=True, name="emailotp.purge")
def purge_expired_records() -> dict[str, int | bool]:
    """Apply the retention settings; schedule it with celery beat (see docs/operators.md). Safe to run any time."""
    from django_emailotp import services

    return dataclasses.asdict(services.purge())
