"""Test settings: the example site's, with mail kept in memory and in-process delivery unless a test says
otherwise. ``DATABASE_URL`` and ``REDIS_URL`` switch the same suite to PostgreSQL and Redis."""

from __future__ import annotations

import importlib.util
import os

from example_project.env import mail_settings
from example_project.settings import *  # noqa: F403

# The Celery worker that tests/worker.py starts sets EMAIL_OTP_TEST_REAL_EMAIL=1 and so keeps the example site's
# real backend (SMTP from EMAIL_URL, or an anymail ESP from ANYMAIL_ESP); every test process keeps mail in memory.
if not os.environ.get("EMAIL_OTP_TEST_REAL_EMAIL"):
    globals().update(mail_settings("django.core.mail.backends.locmem.EmailBackend"))
EMAIL_OTP_DELIVERY = "sync"
EMAIL_OTP_SITE_URL = "https://example.com"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGGING = {"version": 1, "disable_existing_loggers": False}
EMAIL_OTP_DELIVERY_RETRY_BACKOFF = 0.05
EMAIL_OTP_DELIVERY_RETRY_BACKOFF_MAX = 0.2
# kombu waits forever on a Redis broker that accepts the connection but never answers (socket_timeout defaults to
# None), which would hang the request that issues a code. Bounded, a stalled broker becomes DeliveryUnavailable;
# tests/test_broker_unavailable.py holds this to a few seconds.
CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_timeout": 2, "socket_connect_timeout": 2, "visibility_timeout": 240}

# The cache gets its own Redis database, next to the broker's: tests empty the cache (rate-limit counters)
# before each test, and flushing the broker's database would drop a running worker's queues.
if REDIS_URL:  # noqa: F405
    _base, _, _db = REDIS_URL.rpartition("/")  # noqa: F405
    _cache_db = (int(_db) + 1) % 16 if _db.isdigit() else 1
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": f"{_base}/{_cache_db}"}}

# Sign-in and email verification deliver on a background thread. An in-memory SQLite database shared between
# threads ("cache=shared") refuses concurrent writers at once ("database table is locked") instead of waiting, so
# the SQLite test database is a file, where a writer waits for the other's lock like in a real deployment.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    import tempfile as _tempfile

    DATABASES["default"]["TEST"] = {"NAME": str(Path(_tempfile.gettempdir()) / f"emailotp-test-{os.getpid()}.sqlite3")}  # noqa: F405

# A delivery that nothing finished is the sweep's after this lease; short, like the backoffs above, so the crash
# tests wait seconds, not a minute. Only the tests that run a sweep ever act on it.
EMAIL_OTP_DELIVERY_LEASE = 2

# Django's Tasks framework (EMAIL_OTP_DELIVERY = "tasks"): django.tasks on Django 6, the backport on 5.2, with
# django-tasks-db's database backend, whose worker (manage.py db_worker) tests/worker.py starts. Its queue table
# lives in this run's own test database, so parallel runs never take each other's tasks.
if importlib.util.find_spec("django_tasks_db") is not None:
    INSTALLED_APPS = [*INSTALLED_APPS, "django_tasks_db"]  # noqa: F405
    if importlib.util.find_spec("django.tasks") is None:
        INSTALLED_APPS.append("django_tasks")
    TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

# Worker processes started by the tests record the signals they send (tests/signal_probe.py).
if os.environ.get("EMAIL_OTP_TEST_SIGNAL_LOG"):
    INSTALLED_APPS = [*INSTALLED_APPS, "tests.signal_probe.SignalProbeConfig"]
