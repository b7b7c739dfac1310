"""Reading the environment variables that switch the example site (and the tests) to real services."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import unquote, urlsplit


def database_from_url(url: str | None, default_sqlite: str) -> dict[str, Any]:
    """``postgres://user:pass@host:port/name`` or ``sqlite:///path``; unset means the embedded SQLite file."""
    if not url:
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": default_sqlite}
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": unquote(parts.path[1:]) or default_sqlite}
    if parts.scheme in ("postgres", "postgresql", "pgsql"):
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parts.path[1:]) or "postgres",
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "CONN_MAX_AGE": 0,
        }
    raise ValueError(f"DATABASE_URL scheme {parts.scheme!r} is not supported (use postgres:// or sqlite://)")


def mail_settings(backend: str, **options: Any) -> dict[str, Any]:
    """Mail configuration for the running Django: ``MAILERS`` from 6.1 on, the ``EMAIL_*`` settings before.

    ``options`` use the MAILERS spelling (host, port, timeout, ...); each maps to ``EMAIL_<NAME>`` on older Django.
    """
    import django

    if django.VERSION >= (6, 1):
        return {"MAILERS": {"default": {"BACKEND": backend, "OPTIONS": options}}}
    return {"EMAIL_BACKEND": backend, **{f"EMAIL_{name.upper()}": value for name, value in options.items()}}


def flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")
