"""Shared fixtures.

Tests that need PostgreSQL or Redis are marked ``postgres`` / ``redis``. Without ``DATABASE_URL`` / ``REDIS_URL``
(the embedded default of ``make test``) they skip, because the service-backed suite in ``.ci/run`` runs them.
With the URLs set and ``CI=true``, an unreachable service or any skipped test fails the run.
"""

from __future__ import annotations

import os
import re
from typing import Any

import pytest
from django.core import mail
from django.db import connection

from tests.factories import UserFactory

OTP_MIDDLEWARE = "django_emailotp.middleware.EmailOTPMiddleware"
CODE_LINE = re.compile(r"^\s{4}(\d{6,10})\s*$", re.MULTILINE)
# The brokers every real-worker test runs on (tests/worker.py).
BROKERS = ("redis", "rabbitmq")
IN_CI = os.environ.get("CI", "").lower() == "true"
SERVICES_SUITE = bool(os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL"))


def code_from(message: mail.EmailMessage) -> str:
    """The code as the user reads it in the plain-text part of the email."""
    match = CODE_LINE.search(str(message.body))
    assert match, f"no code in the email body: {message.body!r}"
    return match.group(1)


def redis_url() -> str | None:
    url = os.environ.get("REDIS_URL")
    if not url:
        return None
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if IN_CI:
            pytest.fail(f"REDIS_URL={url} is set but Redis cannot be reached: {exc}", pytrace=False)
        pytest.skip(f"Redis at {url} unreachable: {exc}")
    return url


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    database_url = os.environ.get("DATABASE_URL", "")
    for item in items:
        if "postgres" in item.keywords and not database_url.startswith(("postgres", "pgsql")):
            item.add_marker(pytest.mark.skip(reason="needs PostgreSQL: set DATABASE_URL (the services suite does)"))
        if "redis" in item.keywords and not os.environ.get("REDIS_URL"):
            item.add_marker(pytest.mark.skip(reason="needs Redis: set REDIS_URL (the services suite does)"))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # In CI's service-backed run nothing may skip: a skip there would be coverage passed off as done.
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if IN_CI and SERVICES_SUITE and reporter is not None and reporter.stats.get("skipped"):
        reporter.write_line(
            f"FAILED: {len(reporter.stats['skipped'])} test(s) skipped in the service-backed suite", red=True
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def _empty_rate_limit_counters() -> None:
    """Rate-limit counters live in the cache; each test starts with none (Redis keeps them between runs)."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(scope="module", params=BROKERS)
def broker(request: pytest.FixtureRequest) -> str:
    """The Celery broker of a worker test module: it runs once on Redis, once on RabbitMQ."""
    return str(request.param)


@pytest.fixture(params=[True, False], ids=["with-middleware", "without-middleware"])
def middleware_installed(request: pytest.FixtureRequest, settings: Any) -> bool:
    """Runs a test with EmailOTPMiddleware in MIDDLEWARE and again without it: views marked for step-up must answer
    the same either way, because they guard themselves (SECURITY.md rule 20). Parametrize it ``indirect`` to pick."""
    if not request.param:
        settings.MIDDLEWARE = [name for name in settings.MIDDLEWARE if name != OTP_MIDDLEWARE]
    return bool(request.param)


@pytest.fixture
def user(db: None) -> object:
    return UserFactory(username="alice", email="alice@example.com")


@pytest.fixture
def other_user(db: None) -> object:
    return UserFactory(username="bob", email="bob@example.com")


@pytest.fixture
def is_postgres() -> bool:
    return connection.vendor == "postgresql"
