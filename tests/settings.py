"""Test settings: the example site's, with mail kept in memory and in-process delivery unless a test says
otherwise. ``DATABASE_URL`` and ``REDIS_URL`` switch the same suite to PostgreSQL and Redis."""

from __future__ import annotations

from example_project.settings import *  # noqa: F403

EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
EMAIL_OTP_DELIVERY = "sync"
EMAIL_OTP_SITE_URL = "https://example.com"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGGING = {"version": 1, "disable_existing_loggers": False}
EMAIL_OTP_DELIVERY_RETRY_BACKOFF = 0.05
EMAIL_OTP_DELIVERY_RETRY_BACKOFF_MAX = 0.2
