"""Settings for the example site.

The embedded default needs nothing beyond Python: SQLite, in-process delivery and the console email backend (the
code appears in the terminal). Environment variables switch it to real services:

- ``DATABASE_URL``  postgres://postgres@127.0.0.1:5432/emailotp
- ``REDIS_URL``     redis://127.0.0.1:6379/0 (shared cache, and Celery broker: delivery becomes "celery")
- ``CELERY_BROKER_URL``  another broker for Celery, e.g. amqp://guest:guest@127.0.0.1:5672// for RabbitMQ
- ``EMAIL_URL``     smtp://host:port to send through an SMTP server instead of the console
- ``ANYMAIL_ESP``   an anymail backend name such as "postmark", with ``ANYMAIL_<ESP>_...`` credentials
- ``EMAIL_OTP_DELIVERY``  "tasks" for Django's Tasks framework (django-tasks-db's database backend), or "sync"
"""

from __future__ import annotations

import importlib.util
import json
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

# The REST API when the "api" extra is installed (make demo installs it).
API_INSTALLED = importlib.util.find_spec("rest_framework") is not None
if API_INSTALLED:
    INSTALLED_APPS += ["rest_framework", "rest_framework.authtoken", "drf_spectacular"]
    REST_FRAMEWORK = {
        "DEFAULT_AUTHENTICATION_CLASSES": [
            "rest_framework.authentication.SessionAuthentication",
            "rest_framework.authentication.TokenAuthentication",
        ],
        "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    }

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

# django-ratelimit's own check (registered only when "django_ratelimit" is in INSTALLED_APPS) warns that Django's
# RedisCache is "not officially supported". It is fine: its incr() is Redis INCR, atomic and shared, and
# emailotp.E024 checks the rate-limit cache itself.
SILENCED_SYSTEM_CHECKS = ["django_ratelimit.W001"]

REDIS_URL = os.environ.get("REDIS_URL")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
    CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL)
    CELERY_BROKER_CONNECTION_TIMEOUT = 2
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # kombu's Redis transport waits forever on a broker that accepts but never answers: bound it.
        "socket_timeout": 2,
        "socket_connect_timeout": 2,
        # Redis gives a message a worker took but never acknowledged (the worker was killed) to another worker
        # only after this many seconds; kombu's default is an hour, long after a 300 s code has expired. Below
        # the code lifetime, and above the longest retry countdown (EMAIL_OTP_DELIVERY_RETRY_BACKOFF_MAX) so a
        # waiting retry is not handed out early. The outbox sweep below recovers such a send sooner still.
        "visibility_timeout": 240,
    }
    CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
    CELERY_TASK_IGNORE_RESULT = True
    # celery -A example_project beat: the outbox sweep every 30 s (a send a worker died with goes out again
    # while its code can be used) and the retention purge daily.
    CELERY_BEAT_SCHEDULE = {
        "emailotp-sweep": {"task": "emailotp.sweep", "schedule": 30.0},
        "emailotp-purge": {"task": "emailotp.purge", "schedule": 24 * 60 * 60.0},
    }
    EMAIL_OTP_DELIVERY = os.environ.get("EMAIL_OTP_DELIVERY", "celery")
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    EMAIL_OTP_DELIVERY = os.environ.get("EMAIL_OTP_DELIVERY", "sync")
    # The embedded default is one process (runserver, the test run), where LocMem's rate-limit counters are exact.
    # emailotp.E024 / W006 say LocMem is no store for a deployment; with REDIS_URL set they stay on.
    SILENCED_SYSTEM_CHECKS += ["emailotp.E024", "emailotp.W006"]

# EMAIL_OTP_DELIVERY=tasks: Django's Tasks framework with django-tasks-db's database backend (run its worker with
# "python manage.py db_worker", and "python manage.py emailotp_sweep" from cron every minute).
if EMAIL_OTP_DELIVERY == "tasks" and importlib.util.find_spec("django_tasks_db") is not None:
    if importlib.util.find_spec("django.tasks") is None:  # Django 5.2: the backport
        INSTALLED_APPS.append("django_tasks")
    INSTALLED_APPS.append("django_tasks_db")
    TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

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
# Users turn the second factor on at /otp/second-factor/ (linked from Security settings); a browser they tick
# "remember" on skips it for 30 days.
EMAIL_OTP_LOGIN_POLICY = "optional"
EMAIL_OTP_TRUSTED_DEVICE_DAYS = 30

# Limits from the environment, so the load test (tests/load/) can run this site under gunicorn with small numbers.
# EMAIL_OTP_RATES is JSON, e.g. {"send_per_user": "5/d", "send_per_ip": null}; EMAIL_OTP_LOCKOUT_THRESHOLD a whole
# number. Unset, the library's defaults apply.
if os.environ.get("EMAIL_OTP_RATES"):
    EMAIL_OTP_RATES = json.loads(os.environ["EMAIL_OTP_RATES"])
if os.environ.get("EMAIL_OTP_LOCKOUT_THRESHOLD"):
    EMAIL_OTP_LOCKOUT_THRESHOLD = int(os.environ["EMAIL_OTP_LOCKOUT_THRESHOLD"])

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
