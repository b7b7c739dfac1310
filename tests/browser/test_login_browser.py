"""The second factor at login on the example site, in a real Chromium: password, then the code from the outbox typed
with the keyboard, landing signed in; "remember this browser" skips the code at the next login.

Screenshots go to build/screenshots/ (CI keeps build/ as its artifact).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
from django.core import mail

from django_emailotp.models import SecondFactor, TrustedDevice
from tests.browser.test_step_up_browser import PASSWORD, Orm, audit_trail, make_user, new_page, press_enter, tab_to
from tests.conftest import code_from

if TYPE_CHECKING:
    from playwright.sync_api import Browser
    from pytest_django.live_server_helper import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_login_with_the_second_factor(
    browser: Browser, live_server: LiveServer, orm: Orm, screenshot_dir: Path, settings: Any
) -> None:
    from playwright.sync_api import expect

    settings.EMAIL_OTP_LOGIN_POLICY = "optional"
    settings.EMAIL_OTP_TRUSTED_DEVICE_DAYS = 30
    user = make_user(orm, "dave")
    orm(lambda: SecondFactor.objects.create(user=user, enabled=True))
    context, page = new_page(browser)

    # 1. The password, with the keyboard: no login yet, the code page instead.
    page.goto(f"{live_server.url}/accounts/login/?next=/try-code/")
    tab_to(page, page.get_by_label("Username"))
    page.keyboard.type("dave")
    tab_to(page, page.get_by_label("Password"))
    page.keyboard.type(PASSWORD)
    press_enter(page)
    assert urlsplit(page.url).path == "/otp/login/verify/"
    expect(page.get_by_role("heading", level=1)).to_have_text("Finish signing in")
    expect(page.get_by_role("status")).to_have_text(
        "Your password was right. We sent a code to d***@example.com to finish signing in; it expires in 5 minutes.",
        use_inner_text=True,
    )
    assert [message.to for message in mail.outbox] == [["dave@example.com"]]
    code_input = page.get_by_label("Code from the email")
    expect(code_input).to_be_focused()
    # A session, but not logged in yet and nothing remembered.
    names = [cookie["name"] for cookie in context.cookies(live_server.url)]
    assert "sessionid" in names
    assert "emailotp_trusted_device" not in names
    page.screenshot(path=screenshot_dir / "10-login-code-form.png", full_page=True)

    # 2. The code from the email, typed; "remember this browser" ticked with the keyboard (Space).
    page.keyboard.type(code_from(mail.outbox[0]))
    remember = page.get_by_label("Remember this browser for 30 days")
    tab_to(page, remember)
    page.keyboard.press("Space")
    expect(remember).to_be_checked()
    page.screenshot(path=screenshot_dir / "11-login-code-typed.png", full_page=True)
    tab_to(page, page.get_by_role("button", name="Confirm"))
    press_enter(page)

    # 3. Signed in, on the page asked for.
    assert urlsplit(page.url).path == "/try-code/"
    expect(page.get_by_role("button", name="Log out dave")).to_be_visible()
    page.screenshot(path=screenshot_dir / "12-logged-in.png", full_page=True)
    [cookie] = [cookie for cookie in context.cookies(live_server.url) if cookie["name"] == "emailotp_trusted_device"]
    assert (cookie["httpOnly"], cookie["sameSite"]) == (True, "Lax")
    assert orm(lambda: TrustedDevice.objects.filter(user=user).count()) == 1

    # 4. Log out and in again: this browser is remembered, so the password alone signs in.
    page.get_by_role("button", name="Log out dave").click()
    page.wait_for_load_state()
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("Username").fill("dave")
    page.get_by_label("Password").fill(PASSWORD)
    press_enter(page)
    assert urlsplit(page.url).path == "/"
    expect(page.get_by_role("button", name="Log out dave")).to_be_visible()
    assert len(mail.outbox) == 1
    page.screenshot(path=screenshot_dir / "13-remembered-login.png", full_page=True)

    assert [event for event, _purpose, _reason in audit_trail(orm, user)] == [
        "second_factor_required",
        "challenge_issued",
        "challenge_sent",
        "verify_succeeded",
        "login_completed",
        "trusted_device_added",
        "login_completed",
    ]
    context.close()
