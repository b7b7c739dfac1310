"""``manage.py emailotp_unlock <username-or-email> [--scope PATH]``: lift a user's email-code lockouts now (every
path, or the one ``--scope`` names)."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_emailotp import services
from django_emailotp.models import LockoutScope


class Command(BaseCommand):
    help = "Lift a user's lockout of email codes (after too many wrong codes). The user is named by username or email."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("user", help="Username, or email address if no username matches.")
        parser.add_argument("--reason", default="", help="Why it is lifted; kept in the audit trail.")
        parser.add_argument(
            "--scope",
            choices=LockoutScope.values,
            default=None,
            help="Lift only the lock of this path (step_up, login or sign_in); default: every path.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user = self.find_user(options["user"])
        scope = options["scope"]
        name = user.get_username()
        active = [
            lockout
            for lockout in (services.active_lockout(user, path) for path in ([scope] if scope else LockoutScope.values))
            if lockout is not None and lockout.locked_until is not None
        ]
        if not active or not services.lift_lockout(user, scope=scope, reason=options["reason"]):
            where = f" on the {scope} path" if scope else ""
            self.stdout.write(f"{name} is not locked out{where}; nothing to do.")
            return
        for lockout in active:
            assert lockout.locked_until is not None
            until = lockout.locked_until.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
            self.stdout.write(
                self.style.SUCCESS(
                    f"Lifted the {lockout.scope} lockout of {name}; it would have lasted until {until} UTC."
                )
            )

    def find_user(self, name: str) -> Any:
        model = get_user_model()
        user = model._default_manager.filter(**{model.USERNAME_FIELD: name}).first()
        if user is not None:
            return user
        matches = list(model._default_manager.filter(**{f"{model.get_email_field_name()}__iexact": name})[:2])
        if not matches:
            raise CommandError(f"No user with the username or email address {name!r}.")
        if len(matches) > 1:
            raise CommandError(f"Several users have the email address {name!r}; give the username instead.")
        return matches[0]
