"""The one way work leaves the services: background jobs go to the queue that ``EMAIL_OTP_DELIVERY`` names.

With ``"sync"`` there is no queue and callers do the work in-process. Any other value names a queue module
(``"celery"``: ``django_emailotp.tasks``; ``"tasks"``: ``django_emailotp.tasks_framework``, Django's Tasks
framework), imported by name when it is first needed, so the services never import the task modules that call
them. A queue takes ids and plain non-personal values only (SECURITY.md rule 22): never a code, an address, an IP
address or a user agent. What a job needs beyond that, it reads from the database by id.
"""

from __future__ import annotations

import uuid
from importlib import import_module
from typing import Protocol, cast

from django_emailotp.conf import DELIVERY_CELERY, DELIVERY_SYNC, DELIVERY_TASKS, app_settings

QUEUE_MODULES = {DELIVERY_CELERY: "django_emailotp.tasks", DELIVERY_TASKS: "django_emailotp.tasks_framework"}


class Queue(Protocol):
    """What a queue module provides. Each raises :class:`DeliveryUnavailable` when it cannot take the job."""

    def enqueue_delivery(self, challenge_id: uuid.UUID, *, attempt: int) -> None:
        """Send the challenge's code email; ``attempt`` is the number of tries the row shows now."""

    def enqueue_notice(self, notice_id: uuid.UUID) -> None:
        """Send the security notice stored in the ``Notice`` row ``notice_id``."""


def queue() -> Queue | None:
    """The queue for background work, or None when ``EMAIL_OTP_DELIVERY = "sync"`` (work runs in-process)."""
    if app_settings.DELIVERY == DELIVERY_SYNC:
        return None
    return cast(Queue, import_module(QUEUE_MODULES[app_settings.DELIVERY]))
