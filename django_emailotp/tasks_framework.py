"""Django's Tasks framework as the queue (``EMAIL_OTP_DELIVERY = "tasks"``): ``django.tasks`` on Django 6.0+, the
``django-tasks`` backport on Django 5.2. Whatever backend ``TASKS`` configures runs the tasks (the database
backend of ``django-tasks-db``, an RQ backend, ...), so a site needs no Celery.

Thin, like the Celery tasks: they carry ids and plain numbers only (SECURITY.md rule 22). The framework has no
retries of its own, so a transient failure enqueues the next try with ``run_after`` (the backoff of
``services.delivery.retry_delay``); the row counts the tries and ends the delivery as ``failed`` on the last one,
and the outbox sweep (``manage.py emailotp_sweep`` from cron) recovers tries a dead worker never finished.
"""

from __future__ import annotations

import importlib.util
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from django_emailotp.conf import app_settings
from django_emailotp.exceptions import DeliveryError, DeliveryUnavailable, MissingDependency

if importlib.util.find_spec("django.tasks") is not None:  # Django 6.0+
    from django.tasks import task
else:
    try:
        from django_tasks import task  # type: ignore[no-redef]
    except ImportError as exc:
        raise MissingDependency("django-tasks", "tasks", 'EMAIL_OTP_DELIVERY = "tasks" on Django 5.2') from exc

NOTICE_RETRIES = 5
logger = logging.getLogger("django_emailotp")
# A task is checked against its backend when it is defined: a backend whose QUEUES lack "default" needs the
# configured queue here already (enqueueing picks EMAIL_OTP_TASKS_QUEUE again, as it is then).
QUEUE_NAME = app_settings.TASKS_QUEUE or "default"  # the framework's own default queue name


@task(queue_name=QUEUE_NAME)
def send_code(challenge_id: str, attempt: int | None = None) -> str:
    """Send the code email for one challenge; a transient failure enqueues the next try after its backoff."""
    from django_emailotp import services

    try:
        return str(services.deliver_challenge(challenge_id, final=False, attempt=attempt))
    except DeliveryError as exc:
        try:
            _enqueue(send_code, (challenge_id, exc.attempt), delay=exc.retry_in)
        except DeliveryUnavailable as refused:  # the row stays "retrying" with its deadline: the sweep takes over
            logger.error("emailotp: the retry of challenge %s could not be enqueued: %s", challenge_id, refused)
        return "retrying"


@task(queue_name=QUEUE_NAME)
def send_notice(notice_id: str, retries: int = 0) -> bool:
    """Send a stored security notice (no secrets inside); tried again a few times if the mail server fails."""
    from django_emailotp.services import delivery, notices

    if notices.send_notice(notice_id):
        return True
    if notices.notice_pending(notice_id) and retries < NOTICE_RETRIES:
        _enqueue(send_notice, (notice_id, retries + 1), delay=delivery.retry_delay(retries + 1))
    return False


def _enqueue(job: Any, args: tuple[Any, ...], *, delay: float = 0.0) -> None:
    """Enqueue on ``EMAIL_OTP_TASKS_QUEUE``; raise :class:`DeliveryUnavailable` when the backend refuses."""
    options: dict[str, Any] = {}
    if app_settings.TASKS_QUEUE:
        options["queue_name"] = app_settings.TASKS_QUEUE
    try:
        if delay and job.get_backend().supports_defer:
            options["run_after"] = datetime.now(UTC) + timedelta(seconds=delay)  # aware, whatever USE_TZ says
        job.using(**options).enqueue(*args)
    except Exception as exc:  # the backend's own errors: a database, Redis or HTTP client that is down
        raise DeliveryUnavailable(f"The task backend could not take the job: {type(exc).__name__}: {exc}") from exc


def enqueue_delivery(challenge_id: uuid.UUID, *, attempt: int) -> None:
    """Enqueue the send task: the challenge id and the number of tries so far, nothing else."""
    _enqueue(send_code, (str(challenge_id), attempt))


def enqueue_notice(notice_id: uuid.UUID) -> None:
    """Enqueue a notice task: the id of its ``Notice`` row, nothing else."""
    _enqueue(send_notice, (str(notice_id),))
