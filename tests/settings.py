"""Test settings: the example site's, with mail kept in memory and in-process delivery unless a test says
otherwise. ``DATABASE_URL`` and ``REDIS_URL`` switch the same suite to PostgreSQL and Redis."""

from __future__ import annotations

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
CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_timeout": 2, "socket_connect_timeout": 2}
