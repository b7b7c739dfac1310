"""The one way work leaves the services: background jobs go to the queue that ``EMAIL_OTP_DELIVERY`` names.

With ``"sync"`` there is no queue and callers do the work in-process. Any other value names a queue module
(``"celery"``: ``django_emailotp.tasks``), imported by name when it is first needed, so the services never import
the task modules that call them. A queue takes ids and plain values only, never a code.
"""

from __future__ import annotations

import uuid
from importlib import import_module
from typing import Any, Protocol, cast

from django_emailotp.conf import DELIVERY_CELERY, DELIVERY_SYNC, app_settings

QUEUE_MODULES = {DELIVERY_CELERY: "django_emailotp.tasks"}


class Queue(Protocol):
    """What a queue module provides. Each raises :class:`DeliveryUnavailable` when it cannot take the job."""

    def enqueue_delivery(self, challenge_id: uuid.UUID) -> None: ...

    def enqueue_notice(
        self, kind: str, user_id: Any, context: dict[str, str | int], *, to: str | None = None
    ) -> None: ...


def queue() -> Queue | None:
    """The queue for background work, or None when ``EMAIL_OTP_DELIVERY = "sync"`` (work runs in-process)."""
    if app_settings.DELIVERY == DELIVERY_SYNC:
        return None
    return cast(Queue, import_module(QUEUE_MODULES[app_settings.DELIVERY]))
