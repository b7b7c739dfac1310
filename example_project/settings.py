"""Settings for the example site.

The embedded default needs nothing beyond Python: SQLite, in-process delivery and the console email backend (the
code appears in the terminal). Environment variables switch it to real services:

- ``DATABASE_URL``  postgres://postgres@127.0.0.1:5432/emailotp
- ``REDIS_URL``     redis://127.0.0.1:6379/0 (shared cache, and Celery broker: delivery becomes "celery")
- ``EMAIL_URL``     smtp://host:port to send through an SMTP server instead of the console
- ``ANYMAIL_ESP``   an anymail backend name such as "postmark", with ``ANYMAIL_<ESP>_...`` credentials
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from example_project.env import database_from_url, flag, mail_settings

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret-3f1c9a7e5b2d4c6e8f0a1b3c5d7e9f1a")
DEBUG = flag("DJANGO_DEBUG", default=True)
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]", "testserver"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_emailotp",
    "example_project.demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_emailotp.middleware.EmailOTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example_project.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "example_project" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]
WSGI_APPLICATION = "example_project.wsgi.application"

DATABASES = {"default": database_from_url(os.environ.get("DATABASE_URL"), str(BASE_DIR / "example.sqlite3"))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_CONNECTION_TIMEOUT = 2
    CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
    CELERY_TASK_IGNORE_RESULT = True
    EMAIL_OTP_DELIVERY = os.environ.get("EMAIL_OTP_DELIVERY", "celery")
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    EMAIL_OTP_DELIVERY = os.environ.get("EMAIL_OTP_DELIVERY", "sync")

EMAIL_URL = os.environ.get("EMAIL_URL")
ANYMAIL_ESP = os.environ.get("ANYMAIL_ESP")
if ANYMAIL_ESP:
    INSTALLED_APPS.append("anymail")
    globals().update(mail_settings(f"anymail.backends.{ANYMAIL_ESP}.EmailBackend"))
    ANYMAIL = {
        key.removeprefix("ANYMAIL_"): value
        for key, value in os.environ.items()
        if key.startswith("ANYMAIL_") and key != "ANYMAIL_ESP"
    }
elif EMAIL_URL:
    _email = urlsplit(EMAIL_URL)
    globals().update(
        mail_settings(
            "django.core.mail.backends.smtp.EmailBackend",
            host=_email.hostname or "127.0.0.1",
            port=_email.port or 25,
            timeout=10,
        )
    )
else:
    globals().update(mail_settings("django.core.mail.backends.console.EmailBackend"))

DEFAULT_FROM_EMAIL = "Example <no-reply@example.com>"
EMAIL_OTP_SITE_NAME = "Example"
EMAIL_OTP_SITE_URL = os.environ.get("EMAIL_OTP_SITE_URL", "http://127.0.0.1:8000")
EMAIL_OTP_PURPOSES = {"danger_zone": "confirm a change in the danger zone"}
# The whole admin needs a fresh step-up (its login page stays public; logging out needs none).
EMAIL_OTP_PROTECTED_URLS = ["admin:*", "!admin:logout"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_emailotp": {"handlers": ["console"], "level": "INFO"}},
}
