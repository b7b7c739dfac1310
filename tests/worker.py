"""A real Celery worker process for the delivery tests.

The worker runs ``celery -A example_project worker`` from this virtualenv with ``tests.settings``, on the test
database that pytest-django created, with ``REDIS_URL`` as its broker and its own queue, so that concurrent test runs
never take each other's tasks. Mail goes wherever the caller's environment says (``EMAIL_URL`` for SMTP,
``ANYMAIL_ESP`` and ``ANYMAIL_*`` for an ESP; see ``tests/settings.py`` and ``example_project/settings.py``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from django.db import connection

from example_project.celery import app as celery_app

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


@dataclass
class Worker:
    queue: str
    hostname: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self, tail: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:]


def session_database_url() -> str:
    """The URL of the database this test session uses (pytest-django's ``test_...`` database)."""
    db = connection.settings_dict
    assert db["ENGINE"] == "django.db.backends.postgresql", "the worker shares the test database: PostgreSQL only"
    credentials = quote(db["USER"] or "", safe="")
    if db["PASSWORD"]:
        credentials += ":" + quote(db["PASSWORD"], safe="")
    netloc = f"{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    return f"postgres://{netloc}/{quote(db['NAME'], safe='')}"


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)  # warm shutdown: finish the current task, then exit
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT)


def _wait_until_ready(worker: Worker) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if worker.process.poll() is not None:
            pytest.fail(f"the Celery worker exited with {worker.process.returncode}:\n{worker.log()}", pytrace=False)
        if celery_app.control.ping(destination=[worker.hostname], timeout=0.5):
            return
    pytest.fail(f"the Celery worker did not answer a ping within {START_TIMEOUT:.0f}s:\n{worker.log()}", pytrace=False)


@contextmanager
def running_worker(log_dir: Path, env: dict[str, str]) -> Iterator[Worker]:
    """Start a worker on a fresh queue with ``env`` added to its environment; always stop it afterwards.

    Call it only after pytest-django set up the test database (depend on ``django_db_setup``).
    """
    queue = f"emailotp-test-{uuid.uuid4().hex[:12]}"
    hostname = f"{queue}@localhost"
    log_path = log_dir / f"{queue}.log"
    worker_env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": session_database_url(),
        "EMAIL_OTP_TEST_REAL_EMAIL": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        **env,
    }
    command = [
        str(Path(sys.executable).with_name("celery")),
        "-A",
        "example_project",
        "worker",
        "--pool=solo",
        "--concurrency=1",
        f"--queues={queue}",
        f"--hostname={hostname}",
        "--without-gossip",
        "--without-mingle",
        "--loglevel=INFO",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=worker_env, stdout=log, stderr=subprocess.STDOUT)
    worker = Worker(queue, hostname, process, log_path)
    try:
        _wait_until_ready(worker)
        yield worker
    finally:
        _stop(process)
        forget_queues(queue)


def forget_queues(prefix: str) -> None:
    """Delete the broker's keys for the worker's queues (their messages and kombu's bindings)."""
    broker = redis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        for key in broker.scan_iter(match=f"*{prefix}*"):
            broker.delete(key)
    finally:
        broker.close()
