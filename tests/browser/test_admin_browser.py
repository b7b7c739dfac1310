"""The admin in a real Chromium: an administrator signs in (the example site puts the admin behind step-up, so with a
code from the outbox), opens the activity page from the app index and unlocks a user from the lockout list.

Screenshots go to build/screenshots/ (CI keeps build/ as its artifact): admin-activity.png, admin-lockouts.png and
admin-lockouts-unlocked.png.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.utils import timezone

from django_emailotp.models import AuditEvent, AuditEventType, AuditOutcome, Lockout
from tests.browser.test_step_up_browser import PASSWORD, press_enter, send_code, type_code
from tests.conftest import code_from
from tests.factories import UserFactory

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page
    from pytest_django.live_server_helper import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

Orm = Callable[..., Any]


def seed() -> dict[str, Any]:
    """An administrator, a locked-out user and one whose lockout ran out, and a few weeks of audit rows."""
    UserFactory(username="root", email="root@example.com", password=PASSWORD, is_staff=True, is_superuser=True)
    alice = UserFactory(username="alice", email="alice@example.com")
    bob = UserFactory(username="bob", email="bob@example.com")
    now = timezone.now()
    Lockout.objects.create(
        user=alice, lock_count=1, locked_until=now + timedelta(minutes=15), last_failure_at=now - timedelta(minutes=1)
    )
    Lockout.objects.create(user=bob, lock_count=2, locked_until=now - timedelta(hours=2), last_failure_at=now)
    rows = []
    for day in range(0, 28, 3):
        when = now - timedelta(days=day)
        for _ in range(2 + day % 5):
            rows.append(
                AuditEvent(event=AuditEventType.CHALLENGE_ISSUED, outcome=AuditOutcome.SUCCESS, created_at=when)
            )
        rows.append(AuditEvent(event=AuditEventType.VERIFY_SUCCEEDED, outcome=AuditOutcome.SUCCESS, created_at=when))
        for index in range(day % 4):
            rows.append(
                AuditEvent(
                    event=AuditEventType.VERIFY_FAILED,
                    outcome=AuditOutcome.FAILURE,
                    reason="invalid_code",
                    user=alice,
                    ip_address=f"198.51.100.{10 + index}",
                    created_at=when,
                )
            )
    rows.append(
        AuditEvent(
            event=AuditEventType.LOCKED_OUT,
            outcome=AuditOutcome.FAILURE,
            user=alice,
            created_at=now - timedelta(minutes=1),
        )
    )
    rows.append(
        AuditEvent(
            event=AuditEventType.RATE_LIMITED,
            outcome=AuditOutcome.FAILURE,
            reason="verify_per_ip",
            ip_address="203.0.113.50",
            created_at=now - timedelta(days=2),
        )
    )
    AuditEvent.objects.bulk_create(rows)
    return {"alice": alice.pk}


def sign_in_to_admin(page: Page, base_url: str) -> None:
    """The admin login, then the step-up the example site asks for before any admin page."""
    page.goto(f"{base_url}/admin/login/")
    page.get_by_label("Username").fill("root")
    page.get_by_label("Password").fill(PASSWORD)
    press_enter(page)
    assert urlsplit(page.url).path == "/otp/verify/"
    send_code(page)
    type_code(page, code_from(mail.outbox[-1]))
    assert urlsplit(page.url).path == "/admin/"


def test_activity_page_and_lockout_list(
    browser: Browser, live_server: LiveServer, orm: Orm, screenshot_dir: Path
) -> None:
    from playwright.sync_api import expect

    ids = orm(seed)
    context = browser.new_context(locale="en-US", viewport={"width": 1440, "height": 900}, color_scheme="light")
    context.set_default_timeout(10_000)
    page = context.new_page()
    sign_in_to_admin(page, live_server.url)

    # The activity page, from the app index.
    page.goto(f"{live_server.url}/admin/emailotp/")
    page.get_by_role("link", name="Activity, last 30 days").click()
    assert urlsplit(page.url).path == "/admin/emailotp/auditevent/activity/"
    expect(page.get_by_role("heading", level=1)).to_have_text("Email code activity")
    for name in ("Codes issued", "Codes verified", "Failed verifications", "Lockouts", "Delivery failures"):
        expect(page.get_by_role("img", name=f"{name} per day")).to_be_visible()
    expect(page.locator("#emailotp-daily tbody tr")).to_have_count(30)
    top_user = page.locator("#emailotp-top-users tbody tr")
    expect(top_user).to_have_count(1)
    expect(top_user.locator("th")).to_have_text("alice")
    expect(top_user.locator("td").first).to_have_text("15")
    page.screenshot(path=screenshot_dir / "admin-activity.png", full_page=True)

    # The lockout list: alice locked, bob's lockout over; unlock alice with the action.
    page.goto(f"{live_server.url}/admin/emailotp/lockout/")
    page.locator("#toggle-nav-sidebar").click()  # the whole list in the picture; the admin remembers the choice
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("alice")
    expect(rows.nth(0)).to_contain_text("locked")
    expect(rows.nth(1)).to_contain_text("expired")
    page.screenshot(path=screenshot_dir / "admin-lockouts.png", full_page=True)

    rows.nth(0).get_by_role("checkbox").check()
    page.locator("select[name=action]").select_option(label="Unlock selected lockouts")
    # The admin's action button: "Go" on Django 5.2, "Run" on 6.1; its name attribute is the same on both.
    page.locator('.actions button[name="index"]').click()
    page.wait_for_load_state()
    expect(page.locator("ul.messagelist")).to_contain_text("Lifted 1 lockout.")
    expect(rows.nth(0)).to_contain_text("lifted by an admin")
    page.screenshot(path=screenshot_dir / "admin-lockouts-unlocked.png", full_page=True)

    lockout = orm(lambda: Lockout.objects.select_related("unlocked_by").get(user_id=ids["alice"]))
    assert lockout.unlocked_by.username == "root"
    assert not lockout.is_active()
    lifted = orm(lambda: AuditEvent.objects.get(event=AuditEventType.LOCKOUT_LIFTED))
    assert (lifted.user_id, lifted.data["by"]) == (ids["alice"], "root")
    context.close()
