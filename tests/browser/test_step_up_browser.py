"""The step-up flow on the example site, in a real Chromium: log in, open a protected page, send the code, read it from
the outbox, type it with the keyboard, land on the page; then a protected form that is kept and re-submitted.

Screenshots of every step go to build/screenshots/ (CI keeps build/ as its artifact).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core import mail

from django_emailotp.models import AuditEvent
from example_project.demo.models import ApiKey
from tests.conftest import code_from
from tests.factories import UserFactory

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Locator, Page, Response
    from pytest_django.live_server_helper import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery staple"
Orm = Callable[..., Any]


def new_page(browser: Browser, *, javascript: bool = True) -> tuple[BrowserContext, Page]:
    context = browser.new_context(
        java_script_enabled=javascript, locale="en-US", viewport={"width": 900, "height": 720}, color_scheme="light"
    )
    context.set_default_timeout(10_000)
    return context, context.new_page()


def make_user(orm: Orm, username: str) -> Any:
    return orm(lambda: UserFactory(username=username, email=f"{username}@example.com", password=PASSWORD))


def is_focused(element: Locator) -> bool:
    return bool(element.evaluate("el => el === document.activeElement"))


def tab_to(page: Page, element: Locator, *, limit: int = 25) -> None:
    """Move the keyboard focus to ``element`` with the Tab key only (it may already have it: autofocus)."""
    for _ in range(limit):
        if is_focused(element):
            return
        page.keyboard.press("Tab")
    pytest.fail(f"{element} not reached with {limit} presses of Tab")


def press_enter(page: Page) -> Response | None:
    """Submit the focused form control's form with Enter and wait for the page it leads to."""
    with page.expect_navigation() as navigation:
        page.keyboard.press("Enter")
    return navigation.value


def type_code(page: Page, code: str) -> Response | None:
    code_input = page.get_by_label("Code from the email")
    tab_to(page, code_input)
    page.keyboard.type(code)
    return press_enter(page)


def send_code(page: Page) -> None:
    tab_to(page, page.get_by_role("button", name="Send code"))
    press_enter(page)


def wrong_code_for(code: str) -> str:
    return f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"


def log_in(page: Page, base_url: str, username: str, shots: Path | None = None) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    if shots is not None:
        page.screenshot(path=shots / "01-login.png", full_page=True)
    press_enter(page)
    assert urlsplit(page.url).path == "/"


def open_security_settings(page: Page) -> Response:
    """Follow the nav link to the protected page; return the response of the page the redirects end on."""
    with page.expect_response(lambda response: urlsplit(response.url).path == "/otp/verify/") as prompt:
        page.get_by_role("link", name="Security settings").click()
    page.wait_for_load_state()
    return prompt.value


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def audit_trail(orm: Orm, user: Any) -> list[tuple[str, str, str]]:
    def read() -> list[tuple[str, str, str]]:
        events = AuditEvent.objects.filter(user=user).order_by("created_at", "id")
        return [(event.event, event.purpose, event.reason) for event in events]

    return orm(read)


def api_key_of(orm: Orm, user: Any) -> ApiKey:
    return orm(lambda: ApiKey.objects.get(user=user))


def test_step_up_and_danger_zone_replay(
    browser: Browser, live_server: LiveServer, orm: Orm, screenshot_dir: Path
) -> None:
    from playwright.sync_api import expect

    user = make_user(orm, "carol")
    context, page = new_page(browser)
    visited: list[str] = []
    page.on(
        "framenavigated", lambda frame: visited.append(urlsplit(frame.url).path) if frame == page.main_frame else None
    )

    # 1. Log in.
    log_in(page, live_server.url, "carol", screenshot_dir)

    # 2. The protected page sends us to the prompt; nothing is sent on GET.
    prompt = open_security_settings(page)
    assert query_of(page.url) == {"purpose": ["step_up"], "next": ["/security/"]}
    assert "no-store" in prompt.headers["cache-control"]
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm it is you")
    expect(page.get_by_text("We will send a code to c***@example.com.")).to_be_visible()
    assert mail.outbox == []
    page.screenshot(path=screenshot_dir / "02-step-up-prompt.png", full_page=True)

    # 3. "Send code" with the keyboard: one email to the user, and the code form.
    send_code(page)
    assert [message.to for message in mail.outbox] == [["carol@example.com"]]
    code = code_from(mail.outbox[0])
    expect(page.get_by_role("status")).to_have_text(
        "We sent a code to c***@example.com. It expires in 5 minutes.", use_inner_text=True
    )
    code_input = page.get_by_label("Code from the email")
    expect(code_input).to_be_focused()  # autofocus: the user can type straight away
    page.screenshot(path=screenshot_dir / "03-code-form.png", full_page=True)

    # 4. A wrong code: the error is shown, announced, and tied to the input; one attempt is gone.
    response = type_code(page, wrong_code_for(code))
    assert response is not None
    assert response.status == 400
    error = page.get_by_role("alert")
    expect(error).to_have_text("That code is not right. Check the latest email and try again.")
    expect(code_input).to_have_attribute("aria-invalid", "true")
    expect(code_input).to_have_attribute("aria-describedby", "emailotp-code-help emailotp-code-error")
    expect(code_input).to_have_value("")
    expect(page.locator("#emailotp-code-help")).to_contain_text("4 attempts left.")
    page.screenshot(path=screenshot_dir / "04-wrong-code.png", full_page=True)

    # ... then the right one lands on the page that asked for it.
    type_code(page, code)
    assert urlsplit(page.url).path == "/security/"
    expect(page.get_by_role("heading", level=1)).to_have_text("Security settings")
    page.screenshot(path=screenshot_dir / "05-security-settings.png", full_page=True)
    key_before = api_key_of(orm, user)
    assert key_before.rotation_reason == ""

    # 5. The Danger zone: a POST without its single-use grant is kept, the user is asked again, and after the code
    # the kept form is re-submitted by the page's script, once, to the same path.
    reason = "laptop stolen at the airport"
    tab_to(page, page.get_by_label("Why are you rotating the key?"))
    page.keyboard.type(reason)
    press_enter(page)
    assert urlsplit(page.url).path == "/otp/verify/"
    query = query_of(page.url)
    assert query["purpose"] == ["danger_zone"]
    assert query["next"] == ["/security/rotate-key/"]
    assert len(query["replay"][0]) >= 16
    expect(page.get_by_text("To continue, we need to confirm a change in the danger zone")).to_be_visible()
    page.screenshot(path=screenshot_dir / "06-danger-zone-prompt.png", full_page=True)
    send_code(page)
    assert len(mail.outbox) == 2
    danger_code = code_from(mail.outbox[1])
    page.screenshot(path=screenshot_dir / "07-danger-zone-code-form.png", full_page=True)
    visited.clear()
    type_code(page, danger_code)
    page.wait_for_url(f"{live_server.url}/security/")
    expect(page.get_by_role("status")).to_contain_text(f"API key rotated (reason: {reason}).")
    # The POST went through the continue page without anyone pressing its button.
    assert visited == ["/otp/continue/", "/security/"]
    page.screenshot(path=screenshot_dir / "08-key-rotated.png", full_page=True)

    key_after = api_key_of(orm, user)
    assert key_after.rotation_reason == reason
    assert key_after.key != key_before.key
    assert audit_trail(orm, user) == [
        ("step_up_required", "step_up", ""),
        ("challenge_issued", "step_up", ""),
        ("challenge_sent", "step_up", ""),
        ("verify_failed", "step_up", "invalid_code"),
        ("verify_succeeded", "step_up", ""),
        ("step_up_granted", "step_up", ""),
        ("step_up_required", "danger_zone", ""),
        ("challenge_issued", "danger_zone", ""),
        ("challenge_sent", "danger_zone", ""),
        ("verify_succeeded", "danger_zone", ""),
        ("step_up_granted", "danger_zone", ""),
        ("step_up_used", "danger_zone", ""),
    ]

    # The single-use grant is spent: the next rotation asks for a new code.
    tab_to(page, page.get_by_label("Why are you rotating the key?"))
    page.keyboard.type("once more")
    press_enter(page)
    assert urlsplit(page.url).path == "/otp/verify/"
    assert query_of(page.url)["purpose"] == ["danger_zone"]
    assert api_key_of(orm, user).rotation_reason == reason
    context.close()


def test_step_up_prompt_accessibility(browser: Browser, live_server: LiveServer, orm: Orm) -> None:
    from playwright.sync_api import expect

    make_user(orm, "dave")
    context, page = new_page(browser)
    log_in(page, live_server.url, "dave")
    open_security_settings(page)

    def check_page() -> None:
        assert page.evaluate("document.documentElement.lang") == "en"
        assert page.title() == "Confirm it is you"
        expect(page.locator("h1")).to_have_count(1)
        assert_every_control_tabbable(page)

    # Before sending: the one control is the Send code button.
    check_page()
    expect(page.get_by_role("button", name="Send code")).to_be_visible()

    send_code(page)
    check_page()
    code_input = page.get_by_label("Code from the email")
    expect(code_input).to_have_attribute("autocomplete", "one-time-code")
    expect(code_input).to_have_attribute("inputmode", "numeric")
    expect(code_input).to_have_attribute("type", "text")
    # Associated with a visible <label for=...> (not just an aria-label or a placeholder).
    label = page.locator(f"label[for='{code_input.get_attribute('id')}']")
    expect(label).to_have_text("Code from the email")
    expect(label).to_be_visible()
    context.close()


def assert_every_control_tabbable(page: Page) -> None:
    """Pressing Tab from the top of the page reaches every visible form control (and the links)."""
    controls = page.locator(
        "form :is(input:not([type=hidden]), button, select, textarea), a[href]",
    )
    count = controls.count()
    assert count > 0
    names = [controls.nth(index).evaluate("el => el.outerHTML.slice(0, 80)") for index in range(count)]
    page.evaluate(
        """() => document.querySelectorAll(
            "form :is(input:not([type=hidden]), button, select, textarea), a[href]"
        ).forEach((el, index) => el.setAttribute("data-tab-check", String(index)))"""
    )
    reached: set[int] = set()
    for _ in range(2 * count + 4):
        page.keyboard.press("Tab")
        index = page.evaluate("document.activeElement && document.activeElement.getAttribute('data-tab-check')")
        if index is not None:
            reached.add(int(index))
    missing = [names[index] for index in range(count) if index not in reached]
    assert missing == []


def test_step_up_without_javascript(browser: Browser, live_server: LiveServer, orm: Orm, screenshot_dir: Path) -> None:
    from playwright.sync_api import expect

    user = make_user(orm, "erin")
    context, page = new_page(browser, javascript=False)
    log_in(page, live_server.url, "erin")

    open_security_settings(page)
    send_code(page)
    assert [message.to for message in mail.outbox] == [["erin@example.com"]]
    page.screenshot(path=screenshot_dir / "nojs-01-code-form.png", full_page=True)
    type_code(page, code_from(mail.outbox[0]))
    assert urlsplit(page.url).path == "/security/"
    expect(page.get_by_role("heading", level=1)).to_have_text("Security settings")

    # The kept POST waits on the continue page until its button is pressed.
    reason = "no scripts here"
    tab_to(page, page.get_by_label("Why are you rotating the key?"))
    page.keyboard.type(reason)
    press_enter(page)
    send_code(page)
    type_code(page, code_from(mail.outbox[1]))
    assert urlsplit(page.url).path == "/otp/continue/"
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirmed")
    page.screenshot(path=screenshot_dir / "nojs-02-continue.png", full_page=True)
    assert api_key_of(orm, user).rotation_reason == ""
    tab_to(page, page.get_by_role("button", name="Continue"))
    press_enter(page)
    assert urlsplit(page.url).path == "/security/"
    expect(page.get_by_role("status")).to_contain_text(f"API key rotated (reason: {reason}).")
    page.screenshot(path=screenshot_dir / "nojs-03-key-rotated.png", full_page=True)
    assert api_key_of(orm, user).rotation_reason == reason
    context.close()
