"""Run by tests/test_nomail_user.py in a subprocess under tests.nomail.settings (a user model without an email
field): searching each of the app's admin lists finds rows by the user's handle, where it was a 500 (FieldError:
user__email__icontains)."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.utils import timezone

from django_emailotp import services
from django_emailotp.models import Lockout

pytestmark = pytest.mark.django_db


def test_the_database_is_the_suites() -> None:
    """PostgreSQL in the services suite (its own test database), SQLite in the embedded one."""
    on_postgres = os.environ.get("DATABASE_URL", "").startswith(("postgres", "pgsql"))
    assert connection.vendor == ("postgresql" if on_postgres else "sqlite")
    if on_postgres:
        assert connection.settings_dict["NAME"].endswith("_nomail")


def test_the_user_model_has_no_email_field() -> None:
    model = get_user_model()
    assert (model._meta.label, model.USERNAME_FIELD, model.get_email_field_name()) == (
        "nomail.Member",
        "handle",
        "email",
    )
    assert "email" not in {field.name for field in model._meta.get_fields()}


@pytest.mark.parametrize("screen", ["auditevent", "challenge", "lockout", "stepupgrant"])
def test_every_admin_list_searches_by_the_users_handle(screen: str) -> None:
    members = get_user_model().objects
    admin = members.create_superuser("root", "correct horse battery staple")
    ada, bob = members.create_user("ada-lovelace"), members.create_user("bob")
    for member in (ada, bob):
        # A code sent to an address the project keeps elsewhere, a grant, a lockout: each writes audit rows too.
        services.issue_challenge(user=member, email=f"{member.handle}@example.com", purpose="step_up")
        services.grant_step_up(user=member, purpose="step_up", method="backup_code")
        Lockout.objects.create(
            user=member, consecutive_failures=10, locked_until=timezone.now() + timedelta(minutes=15)
        )
    client = Client()
    client.force_login(admin)
    response = client.get(f"/admin/emailotp/{screen}/", {"q": "lovelace"})
    assert response.status_code == 200
    rows = list(response.context["cl"].result_list)
    assert rows
    assert {row.user for row in rows} == {ada}
    assert response.context["cl"].search_fields == (
        ["user__handle", "email_pseudonym", "ip_address"]
        if screen == "auditevent"
        else ["user__handle", "email", "esp_message_id", "ip_address"]
        if screen == "challenge"
        else ["user__handle"]
    )
