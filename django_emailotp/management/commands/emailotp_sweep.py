"""``manage.py emailotp_sweep``: queue again the code emails a worker or the broker lost (run it every minute from
cron, or use the ``emailotp.sweep`` Celery task)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from django_emailotp import services

LINES = (
    ("redispatched", "deliveries queued again"),
    ("failed", "deliveries failed (every try used, the last never finished)"),
    ("unavailable", "deliveries the queue refused (tried again by the next sweep)"),
)


class Command(BaseCommand):
    help = (
        "Queue again every code email still queued or retrying past its deadline while its code can be used; "
        "safe to run from several places at once."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        report = services.sweep_deliveries()
        self.stdout.write("Swept:")
        for field, label in LINES:
            self.stdout.write(f"  {getattr(report, field):>8}  {label}")
