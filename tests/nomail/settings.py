"""The test settings with a user model that has no email field.

On PostgreSQL the test database gets a name of its own, so a run under these settings (in a subprocess of the main
suite) never touches the main suite's; SQLite test databases are a file per process already (tests/settings.py).
"""

from __future__ import annotations

from tests.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.nomail"]  # noqa: F405
AUTH_USER_MODEL = "nomail.Member"
EMAIL_OTP_PROTECTED_URLS: list[str] = []
if DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":  # noqa: F405
    DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}_nomail"}  # noqa: F405
