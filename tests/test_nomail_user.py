"""A project whose user model has no email field (issue 10 finding 11). Its tests (tests/nomail/check_*.py) run in
a subprocess under tests.nomail.settings, so this suite keeps Django's user model; the subprocess uses the same
database server (its own test database) and cache as this run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_nomail_checks(name: str) -> str:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--ds",
            "tests.nomail.settings",
            f"tests/nomail/{name}",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed.stdout


def test_admin_search_without_an_email_field() -> None:
    summary = run_nomail_checks("check_admin_search.py").strip().splitlines()[-1]
    assert re.fullmatch(r"6 passed in [\d.]+s", summary), summary
