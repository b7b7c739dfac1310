"""Create (or reset) the demo user: ``python manage.py demo_setup``."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo-password"
DEMO_EMAIL = "demo@example.com"


class Command(BaseCommand):
    help = "Create or reset the demo user (demo / demo-password), a staff member of the example site."

    def handle(self, *args: Any, **options: Any) -> None:
        user, created = get_user_model().objects.get_or_create(username=DEMO_USERNAME, defaults={"email": DEMO_EMAIL})
        user.email = DEMO_EMAIL
        user.is_staff = user.is_superuser = True
        user.set_password(DEMO_PASSWORD)
        user.save()
        self.stdout.write(
            f"{'Created' if created else 'Reset'} user {DEMO_USERNAME!r} with password {DEMO_PASSWORD!r}."
        )
