"""Without an optional extra the rest works, and using the extra's feature names the pip extra to install.

Each case runs in a fresh interpreter where the package is made unimportable (``sys.modules[name] = None`` is how
Python marks a module that cannot be imported), so nothing this test process already imported can leak in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

SETUP = """
import json, os, sys
for name in {missing!r}:
    sys.modules[name] = None
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
"""


def run_without(missing: list[str], body: str) -> dict[str, Any]:
    """Run ``body`` under the test settings (in-memory SQLite) with ``missing`` unimportable; return its JSON."""
    env = {key: value for key, value in os.environ.items() if key not in ("REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env["DATABASE_URL"] = "sqlite:///:memory:"
    script = SETUP.format(missing=missing) + textwrap.dedent(body)
    completed = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_importing_the_tasks_without_celery_names_the_extra() -> None:
    result = run_without(
        ["celery"],
        """
        from django_emailotp.exceptions import ConfigurationError, MissingDependency
        try:
            import django_emailotp.tasks
        except MissingDependency as exc:
            print(json.dumps({
                "message": str(exc), "package": exc.package, "extra": exc.extra,
                "import_error": isinstance(exc, ImportError), "configuration": isinstance(exc, ConfigurationError),
            }))
        """,
    )
    assert result == {
        "message": "EMAIL_OTP_DELIVERY = \"celery\" needs the 'celery' package. "
        "Install it with: pip install 'django-emailotp[celery]'",
        "package": "celery",
        "extra": "celery",
        "import_error": True,
        "configuration": True,
    }
    assert "django-emailotp[celery]" in result["message"]


def test_tasks_delivery_without_the_tasks_framework_names_the_extra() -> None:
    # Django 5.2 without the backport (django.tasks arrives with Django 6.0): the queue module names the extra,
    # both when it is imported and when issuing reaches it, and the system check says the same.
    result = run_without(
        ["django.tasks", "django_tasks", "django_tasks_db"],
        """
        from django.contrib.auth import get_user_model
        from django.core.checks import run_checks
        from django.test.utils import override_settings
        from django_emailotp.exceptions import MissingDependency
        from django_emailotp.services import issue_challenge

        user = get_user_model().objects.create_user("alice", "alice@example.com", "pw")
        with override_settings(EMAIL_OTP_DELIVERY="tasks"):
            checks = sorted(m.id for m in run_checks() if m.id and m.id.startswith("emailotp.") and m.is_serious())
            try:
                issue_challenge(user=user, purpose="login")
            except MissingDependency as exc:
                print(json.dumps({"message": str(exc), "extra": exc.extra, "checks": checks}))
        """,
    )
    assert result == {
        "message": "EMAIL_OTP_DELIVERY = \"tasks\" on Django 5.2 needs the 'django-tasks' package. "
        "Install it with: pip install 'django-emailotp[tasks]'",
        "extra": "tasks",
        "checks": ["emailotp.E038"],
    }


def test_the_engine_issues_and_verifies_without_celery() -> None:
    result = run_without(
        ["celery"],
        """
        from django.contrib.auth import get_user_model
        from django.core import mail
        from django.core.checks import run_checks
        from django.test.utils import override_settings
        from django_emailotp.exceptions import MissingDependency
        from django_emailotp.services import issue_challenge, verify_challenge
        from tests.conftest import code_from

        user = get_user_model().objects.create_user("alice", "alice@example.com", "pw")
        challenge = issue_challenge(user=user, purpose="login")  # autocommit: sync delivery runs at once
        code = code_from(mail.outbox[0])
        verified = verify_challenge(challenge.pk, code)
        challenge.refresh_from_db()
        checks = {}
        for delivery in ("sync", "celery"):
            with override_settings(EMAIL_OTP_DELIVERY=delivery):
                checks[delivery] = sorted(
                    m.id for m in run_checks() if m.id.startswith("emailotp.") and not m.is_silenced()
                )
        with override_settings(EMAIL_OTP_DELIVERY="celery"):
            try:
                issue_challenge(user=user, purpose="step_up")
                celery_issue = "no error"
            except MissingDependency as exc:
                celery_issue = str(exc)
        print(json.dumps({
            "celery_loaded": sys.modules.get("celery") is not None,
            "sent": len(mail.outbox), "status": challenge.status, "success": verified.success,
            "checks": checks, "celery_issue": celery_issue,
        }))
        """,
    )
    assert result["celery_loaded"] is False
    assert (result["sent"], result["status"], result["success"]) == (1, "verified", True)
    assert result["checks"] == {"sync": [], "celery": ["emailotp.E006"]}
    assert "pip install 'django-emailotp[celery]'" in result["celery_issue"]


def test_the_email_without_anymail_has_no_esp_extras() -> None:
    result = run_without(
        ["anymail"],
        """
        import smtplib
        from django.contrib.auth import get_user_model
        from django.core import mail
        from django_emailotp import delivery
        from django_emailotp.services import issue_challenge, verify_challenge
        from tests.conftest import code_from

        user = get_user_model().objects.create_user("alice", "alice@example.com", "pw")
        challenge = issue_challenge(user=user, purpose="login")
        message = mail.outbox[0]
        print(json.dumps({
            "anymail": delivery.anymail_installed(),
            "tags": hasattr(message, "tags"), "metadata": hasattr(message, "metadata"),
            "verified": verify_challenge(challenge.pk, code_from(message)).success,
            "transient": [delivery.is_transient(e) for e in (TimeoutError(), smtplib.SMTPDataError(554, b"no"))],
        }))
        """,
    )
    assert result == {"anymail": False, "tags": False, "metadata": False, "verified": True, "transient": [True, False]}


@pytest.mark.parametrize("missing", [["celery"], ["anymail"], ["celery", "anymail"]])
def test_the_example_settings_load_without_the_extras(missing: list[str]) -> None:
    result = run_without(
        missing,
        """
        from django.conf import settings
        import example_project
        print(json.dumps({"app": example_project.celery_app is not None, "delivery": settings.EMAIL_OTP_DELIVERY}))
        """,
    )
    assert result == {"app": "celery" not in missing, "delivery": "sync"}
