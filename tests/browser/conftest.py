"""A real Chromium driven by Playwright against the example site on ``live_server``.

The browser is Debian's ``chromium`` at /usr/bin/chromium (Playwright's own download needs the internet, which these
machines do not have). Without it the tests skip on a laptop and fail under ``CI=true``, where ``.ci/run`` installs it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from django.core.cache import cache
from django.db import connections

from tests.conftest import IN_CI

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = Path("/usr/bin/chromium")
# Everything that would phone home is off: the machines have no internet, and the test must not depend on it.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"

T = TypeVar("T")


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason}; CI must run the browser test (.ci/run installs chromium with apt)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        _unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (it is in the `test` dependency group)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def screenshot_dir() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    # With REDIS_URL the cache outlives the run: start without counters (rate limits, cooldowns) of earlier runs.
    cache.clear()


def _closing(function: Callable[..., T]) -> Callable[..., T]:
    def run(*args: Any) -> T:
        try:
            return function(*args)
        finally:
            connections.close_all()

    return run


@pytest.fixture
def orm() -> Callable[..., Any]:
    """Run database code in a helper thread.

    Playwright's sync API keeps an asyncio loop running on the main thread, and Django refuses synchronous database
    access from a thread with a running loop (SynchronousOnlyOperation). The test database is visible from other
    threads (transactional tests; SQLite's test database is a shared-cache in-memory database), as it is to the live
    server's thread.
    """

    def call(function: Callable[..., T], *args: Any) -> T:
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(_closing(function), *args).result()

    return call
