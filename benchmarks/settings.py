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
