"""Real worker processes for the delivery tests: a Celery worker, or the Django Tasks database backend's worker.

The Celery worker runs ``celery -A example_project worker`` from this virtualenv with ``tests.settings``, on the test
database that pytest-django created, with Redis (``REDIS_URL``) or RabbitMQ (``RABBITMQ_URL``) as its broker and its
own queue, so that concurrent test runs never take each other's tasks. The Tasks worker runs ``manage.py db_worker``
on the same database, whose task table is this run's own. Mail goes wherever the caller's environment says
(``EMAIL_URL`` for SMTP, ``ANYMAIL_ESP`` and ``ANYMAIL_*`` for an ESP; see ``tests/settings.py`` and
``example_project/settings.py``).
"""

from __future__ import annotations

import base64
import json
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
from typing import Any
from urllib.parse import quote

import pytest
import redis
from django.db import connection
from kombu import Connection

from example_project.celery import app as celery_app
from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


# What every module of real-worker tests is marked with.
WORKER_TESTS = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def broker_url(broker: str) -> str:
    """The URL of a broker this run may use: Redis from ``REDIS_URL``, RabbitMQ from ``RABBITMQ_URL``."""
    if broker == "redis":
        return os.environ["REDIS_URL"]
    url = os.environ.get("RABBITMQ_URL")
    if not url:
        message = "needs RabbitMQ: set RABBITMQ_URL (the services suite does)"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    try:
        with Connection(url, connect_timeout=2) as probe:
            probe.ensure_connection(max_retries=1)
    except Exception as exc:
        if IN_CI:
            pytest.fail(f"RABBITMQ_URL={url} is set but RabbitMQ cannot be reached: {exc}", pytrace=False)
        pytest.skip(f"RabbitMQ at {url} unreachable: {exc}")
    return url


def _drop_broker_connections() -> None:
    # The app keeps a connection pool and a producer pool built from broker_url; both must be rebuilt.
    # Celery itself does the same after a fork (Celery._after_fork).
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@contextmanager
def broker_at(url: str) -> Iterator[str]:
    """Publish from this process to the broker at ``url`` (the workers get theirs from the environment)."""
    original = celery_app.conf.broker_url
    _drop_broker_connections()
    celery_app.conf.broker_url = url
    try:
        yield url
    finally:
        _drop_broker_connections()
        celery_app.conf.broker_url = original


@dataclass
class Worker:
    queue: str
    hostname: str
    process: subprocess.Popen[bytes]
    log_path: Path
    broker: str = "redis"

    def log(self, tail: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:]

    def full_log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """``kill -9`` of the worker's main process: no warm shutdown, no acknowledgement, nothing cleaned up."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT)


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


def worker_environment(env: dict[str, str]) -> dict[str, str]:
    """What a worker process runs with: the test settings on this session's database, and ``env``."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": session_database_url(),
        "EMAIL_OTP_TEST_REAL_EMAIL": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        **env,
    }


def new_queue_name() -> str:
    return f"emailotp-test-{uuid.uuid4().hex[:12]}"


@contextmanager
def running_worker(
    log_dir: Path, env: dict[str, str], *, broker: str = "redis", queue: str | None = None
) -> Iterator[Worker]:
    """Start a Celery worker on a fresh queue (or on ``queue``, which the caller then owns and empties) with
    ``env`` added to its environment; always stop it afterwards.

    Call it only after pytest-django set up the test database (depend on ``django_db_setup``).
    """
    owned = queue is None
    queue = queue or new_queue_name()
    hostname = f"{queue}-{uuid.uuid4().hex[:6]}@localhost"  # each start its own name: pings reach this one only
    log_path = log_dir / f"{hostname}.log"
    url = broker_url(broker)
    worker_env = worker_environment({"CELERY_BROKER_URL": url, **env})
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
    worker = Worker(queue, hostname, process, log_path, broker)
    try:
        with broker_at(url):
            _wait_until_ready(worker)
        yield worker
    finally:
        _stop(process)
        if owned:
            forget_queues(queue, broker)


def forget_queues(prefix: str, broker: str = "redis", names: tuple[str, ...] = ()) -> None:
    """Delete the broker's queues of a worker (their messages; on Redis, kombu's bindings too)."""
    if broker == "rabbitmq":
        with Connection(broker_url("rabbitmq")) as conn:
            channel = conn.default_channel
            for name in (prefix, *names):
                channel.queue_delete(name)
        return
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        for key in client.scan_iter(match=f"*{prefix}*"):
            client.delete(key)
    finally:
        client.close()


@dataclass
class RawMessage:
    """One message as the broker stores it: ``raw`` is every byte of it (envelope, headers, properties, body)."""

    raw: bytes
    headers: dict[str, Any]
    body: bytes

    @property
    def task(self) -> str:
        return str(self.headers["task"])

    @property
    def arguments(self) -> tuple[list[Any], dict[str, Any]]:
        args, kwargs, _embed = json.loads(self.body)
        return args, kwargs


def raw_messages(broker: str, queue: str, *, take: bool = False) -> list[RawMessage]:
    """The serialized messages waiting in ``queue``, exactly as the broker holds them; ``take`` removes them.

    Redis: kombu's JSON envelope of each list entry. RabbitMQ: each AMQP message's headers, properties and body,
    read with basic_get (not acknowledged unless taken, so closing the channel puts them back)."""
    found: list[RawMessage] = []
    if broker == "redis":
        client = redis.Redis.from_url(os.environ["REDIS_URL"])
        try:
            for entry in client.lrange(queue, 0, -1):
                envelope = json.loads(entry)
                body = base64.b64decode(envelope["body"])
                found.append(RawMessage(bytes(entry) + b"\n" + body, envelope["headers"], body))
            if take:
                client.delete(queue)
        finally:
            client.close()
        return found
    with Connection(broker_url("rabbitmq")) as conn:
        channel = conn.channel()
        while (message := channel.basic_get(queue, no_ack=take)) is not None:
            envelope = repr({"headers": message.headers, "properties": message.properties}).encode()
            body = message.body if isinstance(message.body, bytes) else message.body.encode()
            found.append(RawMessage(envelope + b"\n" + body, dict(message.headers), body))
        channel.close()
    return found


# ---------------------------------------------------------------------------------------------------------------
# Django's Tasks framework: the database backend's worker


@dataclass
class TasksWorker:
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self, tail: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:]

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT)


@contextmanager
def running_tasks_worker(log_dir: Path, env: dict[str, str]) -> Iterator[TasksWorker]:
    """Start ``manage.py db_worker`` (django-tasks-db) polling every 0.05 s; always stop it afterwards."""
    log_path = log_dir / f"db-worker-{uuid.uuid4().hex[:8]}.log"
    command = [
        sys.executable,
        "manage.py",
        "db_worker",
        "--interval=0.05",
        "--no-startup-delay",
        "--no-reload",
        "--verbosity=3",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=worker_environment(env), stdout=log, stderr=subprocess.STDOUT)
    worker = TasksWorker(process, log_path)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while "Starting worker" not in worker.log():
            if process.poll() is not None:
                pytest.fail(f"the db_worker exited with {process.returncode}:\n{worker.log()}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"the db_worker did not start within {START_TIMEOUT:.0f}s:\n{worker.log()}", pytrace=False)
            time.sleep(0.05)
        yield worker
    finally:
        _stop(process)
