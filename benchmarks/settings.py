"""Django settings for one benchmark process: the app installed, mail kept in memory, Celery delivery, DEBUG off."""

from __future__ import annotations

from typing import Any


def bench_settings(database: dict[str, Any]) -> dict[str, Any]:
    return {
        "DEBUG": False,
        "SECRET_KEY": "benchmark-only-not-secret-6b1f0c3a9e7d5b2f4a8c1e3d5f7a9b0c",
        "ALLOWED_HOSTS": ["testserver"],
        "INSTALLED_APPS": [
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django_emailotp",
        ],
        "DATABASES": {"default": database},
        "DEFAULT_AUTO_FIELD": "django.db.models.BigAutoField",
        "USE_TZ": True,
        "CACHES": {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
        "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
        "PASSWORD_HASHERS": ["django.contrib.auth.hashers.MD5PasswordHasher"],
        "TEMPLATES": [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}],
        "LOGGING": {"version": 1, "disable_existing_loggers": False},
        # The send task is really published, to kombu's in-process memory transport (see backend.celery_app).
        "EMAIL_OTP_DELIVERY": "celery",
        "EMAIL_OTP_SITE_URL": "https://bench.example",
        "EMAIL_OTP_SITE_NAME": "Benchmark",
    }


# Every send and verify-failure limit, set far above what a benchmark run reaches: all requests come from one
# address (127.0.0.1), so the default 20 sends per IP per hour would refuse issue after 20 rounds. The limiter
# still counts every request in the cache, as it does on a real site.
HIGH_RATES = {
    "send_per_user": "1000000/h",
    "send_per_user_daily": "1000000/d",
    "send_per_address": "1000000/h",
    "send_per_address_daily": "1000000/d",
    "send_per_ip": "1000000/h",
    "send_per_ip_and_address": "1000000/h",
    "send_per_ip_and_address_daily": "1000000/d",
    "send_per_new_address_daily": "1000000/d",
    "verify_failures_per_ip": "1000000/h",
}


def http_settings(database: dict[str, Any]) -> dict[str, Any]:
    """The HTTP level: the REST API of a normal site, served by benchmarks.urls through Django's full stack."""
    base = bench_settings(database)
    return {
        **base,
        "INSTALLED_APPS": [
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "rest_framework",
            "drf_spectacular",
            "django_emailotp",
        ],
        # Django's startproject stack, with the app's middleware after AuthenticationMiddleware.
        "MIDDLEWARE": [
            "django.middleware.security.SecurityMiddleware",
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django_emailotp.middleware.EmailOTPMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
            "django.middleware.clickjacking.XFrameOptionsMiddleware",
        ],
        "ROOT_URLCONF": "benchmarks.urls",
        # Sessions in the database: Django's default engine, stated so the bench does not depend on the default.
        "SESSION_ENGINE": "django.contrib.sessions.backends.db",
        "REST_FRAMEWORK": {
            "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
            "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
        },
        # django-ratelimit's counters (the app's limits) on the locmem cache of bench_settings.
        "RATELIMIT_USE_CACHE": "default",
        "EMAIL_OTP_RATES": HIGH_RATES,
        # emailotp.E024 refuses LocMem as the rate-limit store of a deployment; one benchmark process is exact.
        "SILENCED_SYSTEM_CHECKS": ["emailotp.E024", "emailotp.W006"],
    }
