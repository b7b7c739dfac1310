"""``manage.py emailotp_purge``: apply the retention settings (run it daily from cron, or use the Celery task)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from django_emailotp import services

LINES = (
    ("challenges_expired", "pending challenges expired (code hash wiped)"),
    ("challenges_deleted", "challenges deleted"),
    ("grants_deleted", "expired step-up grants deleted"),
    ("trusted_devices_deleted", "expired remembered browsers deleted"),
    ("notices_deleted", "security notices never sent deleted"),
    ("audit_events_stripped", "audit events stripped of IP address and user agent"),
    ("audit_events_deleted", "audit events deleted"),
)


class Command(BaseCommand):
    help = (
        "Delete challenges, step-up grants and remembered browsers past retention, expire stale codes, strip IP "
        "address and user agent from old audit events and delete audit events past retention."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Count what would change; change nothing.")

    def handle(self, *args: Any, dry_run: bool = False, **options: Any) -> None:
        report = services.purge(dry_run=dry_run)
        verb = "Would purge" if dry_run else "Purged"
        self.stdout.write(f"{verb}:")
        for field, label in LINES:
            self.stdout.write(f"  {getattr(report, field):>8}  {label}")
