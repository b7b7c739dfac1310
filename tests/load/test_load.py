"""Load: the rate limits and the lockout hold across processes.

The example site runs under gunicorn (several sync worker processes on one listening socket) on a fresh PostgreSQL
database of this module's own (created, migrated, dropped at the end), with its rate-limit counters in the Redis
database of ``REDIS_URL``, emptied first (in the services suite that is the broker's database, which no Celery worker
uses while this runs). It delivers in-process (``EMAIL_OTP_DELIVERY="sync"``) to a real SMTP server in this process.
Threads fire at it on loopback, a fixed number of requests each with a timeout, so a run ends by itself.

Challenges for the guessing run are written straight into the database with code hashes (``crypto.code_hash``) of
codes this test knows, bound to each client's session or DRF token exactly as ``RequestMeta`` binds them, so every
guess is known to be wrong and the right code can be tried while the lockout holds.

Skips without ``DATABASE_URL`` and ``REDIS_URL`` (the embedded default); the service-backed suite runs it.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.db import connections
from django.test import override_settings
from django.utils import timezone
from rest_framework.authtoken.models import Token

from django_emailotp import limits
from django_emailotp.crypto import binding_hash, code_hash, code_matches
from django_emailotp.models import AuditEvent, AuditEventType, Challenge, ChallengeStatus, DeliveryStatus, Lockout
from django_emailotp.requestinfo import SESSION_BINDING_KEY
from example_project.env import database_from_url
from tests.mailservers import SMTPServer, code_in, running_smtp_server, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.load]

ROOT = Path(__file__).resolve().parents[2]
LOAD = "load"  # this module's alias for the database the site under load uses
WORKERS = 4
THREADS = 32
REQUEST_TIMEOUT = 20.0
BURST_DEADLINE = 90.0

# The guessing run: one user's challenges, one per credential (sessions and the DRF token), guessed at from one
# address until the per-IP limit of failed verifications answers 429. Together they survive 6 x 2 = 12 wrong codes,
# enough to reach the lockout threshold, while each is guessed at more often than it can take.
SESSIONS = 5
MAX_ATTEMPTS = 2
LOCKOUT_THRESHOLD = 10
LOCKOUT_DURATION = 900  # the default
FAILURES_PER_IP = 6
GUESSES = 96
# The sending run: one user, one fresh session per request (so no resend cooldown applies), one address.
SENDS = 64
SENDS_PER_USER = 5
# Daily windows: an hourly window could end in the middle of a burst and split its count.
RATES: dict[str, str | None] = {
    limits.VERIFY_FAILURES_PER_IP: f"{FAILURES_PER_IP}/d",
    limits.SEND_PER_USER: f"{SENDS_PER_USER}/d",
    limits.SEND_PER_ADDRESS: None,
    limits.SEND_PER_ADDRESS_DAILY: None,
    limits.SEND_PER_IP: None,
}
HOST = "127.0.0.1"
# Loopback has the whole of 127/8: several client addresses without leaving the machine. Each attacking address
# crosses its own per-IP limit in the middle of the burst, so one run puts that limit to the test eight times.
ATTACKERS = tuple(f"127.0.0.{n}" for n in range(1, 9))
OWNER = "127.0.1.1"


# ---------------------------------------------------------------------------------------------------------------
# The database, the SMTP server and the site


def _admin_connection(config: dict[str, Any]) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host=config["HOST"] or None,
        port=config["PORT"] or None,
        user=config["USER"] or None,
        password=config["PASSWORD"] or None,
        dbname="postgres",
        autocommit=True,
        connect_timeout=5,
    )


@pytest.fixture(scope="module")
def database(django_db_blocker: Any) -> Iterator[dict[str, Any]]:
    """A database of this module's own: created, registered as the ``load`` alias, and dropped at the end."""
    config = database_from_url(os.environ["DATABASE_URL"], "")
    name = f"emailotp_load_{secrets.token_hex(4)}"
    with _admin_connection(config) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    config = {**config, "NAME": name}
    try:
        # Both defaults and ours through Django's own normalisation (AUTOCOMMIT, TIME_ZONE, OPTIONS, ...).
        connections.settings[LOAD] = connections.configure_settings({"default": dict(config), LOAD: config})[LOAD]
        with django_db_blocker.unblock():
            yield config
    finally:
        if LOAD in connections.settings:
            connections[LOAD].close()
            del connections[LOAD]
            del connections.settings[LOAD]
        with _admin_connection(config) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def smtp() -> Iterator[SMTPServer]:
    with running_smtp_server() as server:
        yield server


def _postgres_url(config: dict[str, Any]) -> str:
    auth = config["USER"] + (f":{config['PASSWORD']}" if config["PASSWORD"] else "")
    return f"postgres://{auth}@{config['HOST'] or '127.0.0.1'}:{config['PORT'] or 5432}/{config['NAME']}"


def _site_environment(config: dict[str, Any], smtp: SMTPServer) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        # No coverage hooks in the site's processes, no test-only mail switch, no ESP.
        if not key.startswith(("COV_CORE_", "COVERAGE_", "ANYMAIL_", "EMAIL_OTP_", "PYTEST_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="example_project.settings",
        DJANGO_DEBUG="0",
        # Sessions are signed and bindings keyed with SECRET_KEY: this process writes both for the site to read.
        DJANGO_SECRET_KEY=settings.SECRET_KEY,
        DATABASE_URL=_postgres_url(config),
        REDIS_URL=os.environ["REDIS_URL"],
        EMAIL_URL=smtp.url,
        EMAIL_OTP_DELIVERY="sync",
        EMAIL_OTP_RATES=json.dumps(RATES),
        EMAIL_OTP_LOCKOUT_THRESHOLD=str(LOCKOUT_THRESHOLD),
    )
    return env


@dataclass
class Site:
    port: int
    process: subprocess.Popen[bytes]
    access_log: Path
    log: Path

    def served(self) -> list[tuple[str, int, int]]:
        """(worker pid, status, milliseconds in the worker) of each request so far, from gunicorn's access log."""
        lines = self.access_log.read_text().splitlines() if self.access_log.exists() else []
        return [(pid, int(status), int(ms)) for pid, status, ms, *_request in (line.split() for line in lines)]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (gunicorn stops its workers gracefully), then SIGKILL to the whole process group if it lingers."""
    if process.poll() is None:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=15)
    with contextlib.suppress(ProcessLookupError):  # the group is this gunicorn's own (start_new_session)
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def site(database: dict[str, Any], smtp: SMTPServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The example site, migrated, under gunicorn with ``WORKERS`` sync workers on a loopback socket."""
    env = _site_environment(database, smtp)
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=5).flushdb()  # the site's rate-limit counters

    logs = tmp_path_factory.mktemp("gunicorn")
    site_log, access_log = logs / "site.log", logs / "access.log"
    # The socket is bound here and handed over, so the port is known and nothing else can take it meanwhile.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((HOST, 0))
    listener.listen(256)
    listener.set_inheritable(True)
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "example_project.wsgi:application",
        f"--bind=fd://{listener.fileno()}",
        f"--workers={WORKERS}",
        "--worker-class=sync",
        "--preload",
        "--timeout=30",
        "--graceful-timeout=5",
        "--no-control-socket",  # its default path is per user: two sites on one machine would share it
        f"--access-logfile={access_log}",
        "--access-logformat=%(p)s %(s)s %(M)s %(r)s",
    ]
    with site_log.open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            pass_fds=(listener.fileno(),),
            start_new_session=True,
        )
    port = listener.getsockname()[1]
    listener.close()
    running = Site(port, process, access_log, site_log)
    try:

        def booted() -> bool:
            assert process.poll() is None, f"gunicorn exited ({process.returncode}):\n{running.log_text()[-4000:]}"
            return running.log_text().count("Booting worker with pid") >= WORKERS

        wait_until(booted, f"{WORKERS} gunicorn workers", timeout=60, details=lambda: running.log_text()[-4000:])
        # A worker's first request imports the URLconf, DRF, psycopg and the templates (over a second here): warm
        # every worker up, so the bursts measure the steady state.
        warm_up = [Call("/api/otp/step-up/", None, token_for(make_user("warm-up")).headers)] * THREADS
        for _round in range(10):
            assert {answer.status for answer in fire(running, warm_up).answers} == {200}
            if len({pid for pid, _status, _ms in running.served()}) == WORKERS:
                break
        else:
            pytest.fail(f"not every worker answered a warm-up request: {Counter(running.served())}")
        yield running
    finally:
        _stop(process)
    log = running.log_text()
    assert not any(sign in log for sign in ("Traceback", "WORKER TIMEOUT", "[ERROR]", "[CRITICAL]")), log[-4000:]


# ---------------------------------------------------------------------------------------------------------------
# Clients and bursts


@dataclass(frozen=True)
class Credential:
    """How one client proves who it is, and the binding hash its challenges carry."""

    headers: dict[str, str]
    binding: str


def session_for(user: Any) -> Credential:
    """A signed-in session (written straight into the site's session table) with its binding nonce already set."""
    nonce = secrets.token_urlsafe(32)
    data = {
        SESSION_KEY: str(user.pk),
        BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend",
        HASH_SESSION_KEY: user.get_session_auth_hash(),
        SESSION_BINDING_KEY: nonce,
    }
    key = secrets.token_hex(16)
    Session.objects.using(LOAD).create(
        session_key=key, session_data=SessionStore().encode(data), expire_date=timezone.now() + timedelta(hours=1)
    )
    csrf = secrets.token_hex(16)  # an unmasked 32-character secret: cookie and header carry the same value
    return Credential(
        {"Cookie": f"sessionid={key}; csrftoken={csrf}", "X-CSRFToken": csrf}, binding_hash(f"session:{nonce}")
    )


def token_for(user: Any) -> Credential:
    token = Token.objects.using(LOAD).create(user=user)
    return Credential({"Authorization": f"Token {token.key}"}, binding_hash(f"credential:{token.key}"))


def make_user(username: str) -> Any:
    return get_user_model().objects.db_manager(LOAD).create_user(username, f"{username}@example.com")


@dataclass(frozen=True)
class Call:
    path: str
    payload: dict[str, Any] | None  # None: a GET
    headers: dict[str, str]
    source: str = HOST


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    seconds: float
    retry_after: str | None

    @property
    def kind(self) -> tuple[int, str]:
        return self.status, str(self.body.get("error", "ok"))


def send(port: int, call: Call) -> Answer:
    connection = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT, source_address=(call.source, 0))
    headers = {"Content-Type": "application/json", "Accept": "application/json", **call.headers}
    started = time.perf_counter()
    try:
        if call.payload is None:
            connection.request("GET", call.path, headers=headers)
        else:
            connection.request("POST", call.path, body=json.dumps(call.payload).encode(), headers=headers)
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    seconds = time.perf_counter() - started
    body = json.loads(raw) if raw and response.getheader("Content-Type", "").startswith("application/json") else {}
    return Answer(response.status, body, seconds, response.getheader("Retry-After"))


@dataclass(frozen=True)
class Burst:
    answers: list[Answer]
    seconds: float
    served: list[tuple[str, int, int]]  # what the site's access log says about the same requests

    def kinds(self) -> Counter[tuple[int, str]]:
        return Counter(answer.kind for answer in self.answers)

    def workers(self) -> Counter[str]:
        return Counter(pid for pid, _status, _ms in self.served)

    def summary(self, name: str) -> str:
        client = statistics.quantiles(sorted(answer.seconds * 1000 for answer in self.answers), n=10)
        worker = statistics.quantiles(sorted(ms for _pid, _status, ms in self.served), n=10)
        return (
            f"{name}: {len(self.answers)} requests from {THREADS} threads in {self.seconds:.2f} s = "
            f"{len(self.answers) / self.seconds:.0f} req/s; latency at the client p50 {client[4]:.0f} ms, "
            f"p90 {client[8]:.0f} ms; time in the worker p50 {worker[4]:.0f} ms, p90 {worker[8]:.0f} ms; "
            f"requests per worker process {sorted(self.workers().values())}; {dict(sorted(self.kinds().items()))}"
        )


def fire(site: Site, calls: list[Call]) -> Burst:
    """Send ``calls`` from ``THREADS`` threads released together; each request times out, the burst has a deadline."""
    results: list[Answer | None] = [None] * len(calls)
    errors: list[str] = []
    indexes = itertools.count()
    lock = threading.Lock()
    start = threading.Barrier(THREADS + 1)

    def work() -> None:
        start.wait(timeout=30)
        while True:
            with lock:
                index = next(indexes)
            if index >= len(calls):
                return
            try:
                results[index] = send(site.port, calls[index])
            except Exception as exc:  # a refused or timed-out connection is a finding, reported below
                with lock:
                    errors.append(f"{calls[index].path}: {type(exc).__name__}: {exc}")

    already_served = len(site.served())
    threads = [threading.Thread(target=work, name=f"load-{n}", daemon=True) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    start.wait(timeout=30)
    began = time.perf_counter()
    deadline = time.monotonic() + BURST_DEADLINE
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    seconds = time.perf_counter() - began
    assert not any(thread.is_alive() for thread in threads), f"the burst did not finish within {BURST_DEADLINE:.0f} s"
    assert not errors, errors
    answers = [answer for answer in results if answer is not None]
    assert len(answers) == len(calls)
    # A worker writes its access log line just after the response, so the last lines may follow a moment later.
    wait_until(lambda: len(site.served()) >= already_served + len(calls), "the access log", timeout=10)
    served = site.served()[already_served:]
    assert len(served) == len(calls)
    # Several processes answered: whatever held the limits was shared through PostgreSQL and Redis.
    assert len({pid for pid, _status, _ms in served}) >= 2, served
    return Burst(answers, seconds, served)


def site_count(name: str, subject: str) -> int:
    """A rate-limit counter as the site's processes left it in Redis."""
    cache = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": os.environ["REDIS_URL"]}
    with override_settings(CACHES={"default": cache}, EMAIL_OTP_RATES=RATES):
        usage = limits.peek(name, subject)
    assert usage is not None
    return usage.count


def events(event: AuditEventType, **filters: Any) -> Any:
    return AuditEvent.objects.using(LOAD).filter(event=event, **filters)


def report(line: str) -> None:
    """The run's numbers (shown with ``pytest -s``; docs/performance.md records one run)."""
    print(f"\n{line}")


# ---------------------------------------------------------------------------------------------------------------
# The tests


def test_concurrent_wrong_guesses_are_counted_once_and_lock_the_user_out_once(site: Site, smtp: SMTPServer) -> None:
    victim = make_user("victim")
    now = timezone.now()

    def challenge_for(credential: Credential, code: str) -> Challenge:
        pk = uuid.uuid4()
        return Challenge.objects.using(LOAD).create(
            id=pk,
            user=victim,
            email=victim.email,
            purpose="step_up",
            code_hash=code_hash(pk, code),
            created_at=now,
            expires_at=now + timedelta(seconds=300),
            max_attempts=MAX_ATTEMPTS,
            binding=credential.binding,
            delivery_status=DeliveryStatus.SENT,
        )

    # The right codes start with 9; every guess is a different wrong one, spread over all challenges and clients.
    attacked = [
        (challenge_for(credential, f"{900000 + number}"), credential)
        for number, credential in enumerate([session_for(victim) for _ in range(SESSIONS)] + [token_for(victim)])
    ]
    owner = session_for(victim)
    own_challenge = challenge_for(owner, "987654")  # the owner's, in a session of their own: no guess touches it
    calls = []
    for guess in range(GUESSES):
        challenge, credential = attacked[guess % len(attacked)]
        # Each address sends its guesses one after another, so several are in flight at once when it hits its limit.
        path, source = f"/api/otp/challenges/{challenge.pk}/verify/", ATTACKERS[guess * len(ATTACKERS) // GUESSES]
        calls.append(Call(path, {"code": f"{guess:06d}"}, credential.headers, source))

    burst = fire(site, calls)
    report(burst.summary("verify (wrong codes)"))
    kinds = burst.kinds()

    # Nothing but refusals of a wrong code, and each refusal is one audit row, with the reason the client was told.
    failed = events(AuditEventType.VERIFY_FAILED, ip_address__in=ATTACKERS)
    reasons = Counter(failed.values_list("reason", flat=True))
    limited = events(AuditEventType.RATE_LIMITED, ip_address__in=ATTACKERS)
    assert set(limited.values_list("reason", flat=True)) == {limits.VERIFY_FAILURES_PER_IP}
    assert set(reasons) <= {"invalid_code", "burned", "locked_out"}
    told = Counter(
        {
            (400, "invalid_code"): reasons["invalid_code"],
            (400, "burned"): reasons["burned"],
            (429, "locked_out"): reasons["locked_out"],
            (429, "rate_limited"): limited.count(),
        }
    )
    assert kinds == told
    assert failed.count() + limited.count() == GUESSES
    assert all(answer.retry_after and int(answer.retry_after) >= 1 for answer in burst.answers if answer.status == 429)

    # The per-IP limit: from each address exactly FAILURES_PER_IP failures were looked at, across all workers,
    # before the 429s (counted first, so no request in flight in another worker slips past it).
    per_address = GUESSES // len(ATTACKERS)
    assert Counter(failed.values_list("ip_address", flat=True)) == dict.fromkeys(ATTACKERS, FAILURES_PER_IP)
    assert Counter(limited.values_list("ip_address", flat=True)) == dict.fromkeys(
        ATTACKERS, per_address - FAILURES_PER_IP
    )
    assert [site_count(limits.VERIFY_FAILURES_PER_IP, address) for address in ATTACKERS] == [FAILURES_PER_IP] * len(
        ATTACKERS
    )

    # Per challenge: never more wrong attempts than max_attempts; burned exactly when they are used up.
    rows = {row.pk: row for row in Challenge.objects.using(LOAD).filter(pk__in=[c.pk for c, _ in attacked])}
    assert all(row.attempts <= MAX_ATTEMPTS for row in rows.values())
    burned = {pk for pk, row in rows.items() if row.status == ChallengeStatus.BURNED}
    assert burned == {pk for pk, row in rows.items() if row.attempts == MAX_ATTEMPTS}
    assert {row.status for pk, row in rows.items() if pk not in burned} <= {ChallengeStatus.PENDING}
    assert set(events(AuditEventType.CHALLENGE_BURNED).values_list("challenge_id", flat=True)) == burned
    assert events(AuditEventType.CHALLENGE_BURNED).count() == len(burned)
    # Every wrong code that was checked cost its challenge an attempt, and nothing else did.
    assert sum(row.attempts for row in rows.values()) == reasons["invalid_code"]

    # The lockout engaged exactly once: one row, locked once, one audit row, one notice email.
    lockout = Lockout.objects.using(LOAD).get(user=victim)
    assert lockout.lock_count == 1
    assert lockout.locked_until is not None
    assert (
        timedelta(seconds=LOCKOUT_DURATION - 60)
        < lockout.locked_until - now
        <= timedelta(seconds=LOCKOUT_DURATION + 60)
    )
    assert events(AuditEventType.LOCKED_OUT).count() == 1
    # Each checked wrong code is counted once: the ones before the lock made it, any still in flight in the other
    # workers when it committed count toward the next run (never more than one per other worker).
    assert reasons["invalid_code"] == LOCKOUT_THRESHOLD + lockout.consecutive_failures
    assert lockout.consecutive_failures <= WORKERS - 1
    # The notice goes out in-process before the locking request's response: the SMTP server has it by now.
    notices = [message for message in smtp.handler.messages() if message["To"] == victim.email]
    assert len(notices) == 1
    assert events(AuditEventType.NOTICE_SENT, user_id=victim.pk).count() == 1

    # The lockout holds even for the right code, sent by the owner from another address (not rate-limited).
    refused = send(
        site.port,
        Call(f"/api/otp/challenges/{own_challenge.pk}/verify/", {"code": "987654"}, owner.headers, OWNER),
    )
    assert (refused.status, refused.body["error"]) == (429, "locked_out")
    assert 1 <= int(refused.retry_after or 0) <= LOCKOUT_DURATION
    unchanged = Challenge.objects.using(LOAD).get(pk=own_challenge.pk)
    assert (unchanged.status, unchanged.attempts) == (ChallengeStatus.PENDING, 0)
    assert code_matches(own_challenge.pk, "987654", unchanged.code_hash)
    assert list(events(AuditEventType.VERIFY_FAILED, ip_address=OWNER).values_list("reason", flat=True)) == [
        "locked_out"
    ]
    assert not events(AuditEventType.VERIFY_SUCCEEDED).exists()


def test_concurrent_sends_for_one_user_send_exactly_the_per_user_limit(site: Site, smtp: SMTPServer) -> None:
    target = make_user("flooded")
    calls = [Call("/api/otp/challenges/", {"purpose": "step_up"}, session_for(target).headers) for _ in range(SENDS)]

    burst = fire(site, calls)
    report(burst.summary("issue (one user)"))

    # Across all workers exactly SENDS_PER_USER sends are accepted; the signed-in owner is told about the rest
    # (SECURITY.md rule 19): 429 send_limit_reached with Retry-After, never a silent "sent".
    assert burst.kinds() == {(202, "ok"): SENDS_PER_USER, (429, "send_limit_reached"): SENDS - SENDS_PER_USER}
    accepted = [answer for answer in burst.answers if answer.status == 202]
    assert {tuple(sorted(answer.body)) for answer in accepted} == {
        ("email_hint", "expires_at", "id", "purpose", "resend_available_at")
    }
    refusals = [answer for answer in burst.answers if answer.status == 429]
    assert all(1 <= answer.body["retry_after"] <= 86400 for answer in refusals)
    answered = [answer.body["id"] for answer in accepted]
    assert len(set(answered)) == SENDS_PER_USER

    # Only the accepted sends made a challenge; each got a code and an email. Each refusal is audited (answered as
    # refused) and counted against nothing: the counter holds exactly the accepted sends.
    issued = Challenge.objects.using(LOAD).filter(user=target)
    assert {str(pk) for pk in issued.values_list("pk", flat=True)} == set(answered)
    assert events(AuditEventType.CHALLENGE_ISSUED, user_id=target.pk).count() == SENDS_PER_USER
    emailed = issued.filter(send_email=True)
    assert emailed.count() == SENDS_PER_USER
    assert set(emailed.values_list("delivery_status", flat=True)) == {DeliveryStatus.SENT}
    assert all(emailed.values_list("code_hash", flat=True))
    assert events(AuditEventType.CHALLENGE_SENT, user_id=target.pk).count() == SENDS_PER_USER
    refused = events(AuditEventType.RATE_LIMITED, user_id=target.pk)
    assert refused.count() == SENDS - SENDS_PER_USER
    assert {(event.reason, event.data["answered_as"]) for event in refused} == {(limits.SEND_PER_USER, "refused")}
    assert site_count(limits.SEND_PER_USER, f"step_up|{target.pk}|{target.email}") == SENDS_PER_USER

    # Delivery is in-process, before each response: the SMTP server has every email there will be.
    received = [message for message in smtp.handler.messages() if message["To"] == target.email]
    assert len(received) == SENDS_PER_USER
    # Each carries the code of a different one of the emailed challenges.
    matched = {
        next(row.pk for row in emailed if code_matches(row.pk, code_in(message), row.code_hash)) for message in received
    }
    assert matched == set(emailed.values_list("pk", flat=True))
