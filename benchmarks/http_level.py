"""The HTTP level: ``python -m benchmarks.http_level sqlite|postgresql [--url URL]``.

The REST API's verify and issue endpoints served through Django's whole stack (the test Client builds a WSGI
request and runs the WSGI handler: every middleware, URL resolving, DRF's authentication, parsing and rendering),
beside a floor served the same way: :class:`benchmarks.views.SessionUpdateFloorView`, a bare DRF view that loads
the session and its user (as the API's session-authenticated requests do) and makes one conditional UPDATE.

Every request of every round is made by a signed-in user of its own, with a session row of its own, created
before the timed rounds (as ``login()`` would store it): verify then finds one pending step-up challenge with a
known code, bound to that session exactly as the engine binds it; issue finds a user with no live challenge, so
neither the resend cooldown nor a live code is in the way. Prints one JSON document on stdout, like
:mod:`benchmarks.backend`; ``--breakdown`` and ``--profile`` print where the time goes instead.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import pstats
import random
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from benchmarks.backend import (
    BenchError,
    database_settings,
    describe,
    environment,
    log,
    percentile,
    queued_messages,
    setup_django,
    statement_marks,
)
from benchmarks.settings import http_settings

STEP_UP = "step_up"
FLOOR_PURPOSE = "bench_floor"
COUNT_ROUNDS = 5
PASSWORD = "bench-password"
OPERATIONS = ("floor", "verify", "issue")


@dataclass(frozen=True)
class Call:
    """One HTTP request: whose session cookie it carries, where it goes, what it sends, what it must answer."""

    session_key: str
    path: str
    body: dict[str, str]
    expected_status: int


def session_binding(nonce: str) -> str:
    """The binding the engine computes for a session holding ``nonce``: through RequestMeta, as verify does."""
    from django_emailotp.requestinfo import SESSION_BINDING_KEY, RequestMeta

    holder = SimpleNamespace(session={SESSION_BINDING_KEY: nonce}, META={}, auth=None)
    return RequestMeta.from_request(holder).binding


def prepare_rounds(count: int) -> list[dict[str, Call]]:
    """Three users per round (floor, verify, issue), each signed in with a session row of their own."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.auth.hashers import make_password
    from django.contrib.sessions.backends.base import VALID_KEY_CHARS
    from django.contrib.sessions.backends.db import SessionStore
    from django.contrib.sessions.models import Session
    from django.urls import reverse
    from django.utils import timezone
    from django.utils.crypto import get_random_string

    from django_emailotp.crypto import code_hash, generate_code
    from django_emailotp.models import Challenge
    from django_emailotp.requestinfo import SESSION_BINDING_KEY

    user_model = get_user_model()
    tag = uuid.uuid4().hex[:8]
    password = make_password(PASSWORD)
    users = user_model.objects.bulk_create(
        [
            user_model(username=f"http-{tag}-{i}", email=f"http-{tag}-{i}@bench.example", password=password)
            for i in range(3 * count)
        ],
        batch_size=500,
    )
    now = timezone.now()
    store = SessionStore()
    sessions: list[Session] = []

    def signed_in(user: Any, **extra: str) -> str:
        """A session as login() leaves it (user id, backend, auth hash), plus ``extra``."""
        key = get_random_string(32, VALID_KEY_CHARS)  # what SessionStore makes, without its existence query
        data = {
            SESSION_KEY: str(user.pk),
            BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend",
            HASH_SESSION_KEY: user.get_session_auth_hash(),
            **extra,
        }
        expire = now + timedelta(seconds=settings.SESSION_COOKIE_AGE)
        sessions.append(Session(session_key=key, session_data=store.encode(data), expire_date=expire))
        return key

    def pending(user: Any, purpose: str, *, code: str = "", binding: str = "") -> Challenge:
        pk = uuid.uuid4()
        return Challenge(
            id=pk,
            user=user,
            email=user.email,
            purpose=purpose,
            code_hash=code_hash(pk, code) if code else "",
            binding=binding,
            created_at=now,
            expires_at=now + timedelta(hours=1),
            max_attempts=5,
        )

    issue_path = reverse("emailotp-api:challenge-create")
    rounds, challenges = [], []
    for index in range(count):
        floor_user, verify_user, issue_user = users[3 * index : 3 * index + 3]
        floor = pending(floor_user, FLOOR_PURPOSE)
        # The verify user's session already holds the binding nonce that issuing the challenge put there.
        nonce = secrets.token_urlsafe(32)
        code = generate_code(6)
        verify = pending(verify_user, STEP_UP, code=code, binding=session_binding(nonce))
        challenges += [floor, verify]
        rounds.append(
            {
                "floor": Call(signed_in(floor_user), reverse("bench-floor", args=[floor.pk]), {"code": "000000"}, 200),
                "verify": Call(
                    signed_in(verify_user, **{SESSION_BINDING_KEY: nonce}),
                    reverse("emailotp-api:challenge-verify", args=[verify.pk]),
                    {"code": code},
                    200,
                ),
                # A first step-up in this session: issuing stores the binding nonce, so the session is saved.
                "issue": Call(signed_in(issue_user), issue_path, {"purpose": STEP_UP}, 202),
            }
        )
    Session.objects.bulk_create(sessions, batch_size=500)
    Challenge.objects.bulk_create(challenges, batch_size=500)
    return rounds


class Requester:
    """Makes one round's requests through Django's test Client (the WSGI handler and every middleware)."""

    def __init__(self) -> None:
        from django.conf import settings
        from django.test import Client

        # CSRF is not enforced, as in any test client; DRF's SessionAuthentication honours the same flag.
        self.client = Client()
        self.cookie = settings.SESSION_COOKIE_NAME

    def prepare(self, call: Call) -> None:
        self.client.cookies[self.cookie] = call.session_key

    def send(self, call: Call) -> Any:
        return self.client.post(call.path, call.body, content_type="application/json")

    @staticmethod
    def check(name: str, call: Call, response: Any) -> None:
        if response.status_code != call.expected_status:
            raise BenchError(f"{name}: {response.status_code} instead of {call.expected_status}: {response.content!r}")

    def run(self, name: str, call: Call) -> int:
        """Make the request; return its wall-clock nanoseconds (the request only)."""
        self.prepare(call)
        start = time.perf_counter_ns()
        response = self.send(call)
        elapsed = time.perf_counter_ns() - start
        self.check(name, call, response)
        return elapsed


def count_statements(requester: Requester, name: str, call: Call) -> dict[str, Any]:
    """Every statement of one request, the session's load (and save) included."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    requester.prepare(call)
    with CaptureQueriesContext(connection) as captured:
        response = requester.send(call)
    requester.check(name, call, response)
    described = [describe(query["sql"]) for query in captured.captured_queries]
    return {"sequence": described, "total": len([item for item in described if not item.startswith("[")])}


def breakdown(requester: Requester, timed: list[dict[str, Call]]) -> str:
    """Where one request's time goes: the Python before each statement (middleware, DRF, the ORM building the
    query, the view) and each statement and commit in the database, as medians over the requests. The
    operations take turns round by round, as in the timed run, so changes in load hit them alike."""
    segments: dict[str, dict[tuple[int, str], list[int]]] = {name: {} for name in OPERATIONS}
    totals: dict[str, dict[str, list[int]]] = {name: {"python": [], "database": []} for name in OPERATIONS}
    for calls in timed:
        for name in OPERATIONS:
            marks: list[tuple[str, int]] = []
            requester.prepare(calls[name])
            with statement_marks(marks):
                start = time.perf_counter_ns()
                response = requester.send(calls[name])
                end = time.perf_counter_ns()
            requester.check(name, calls[name], response)
            previous, in_database = start, 0
            for position, (label, moment) in enumerate([*marks, ("python, then return", end)]):
                segments[name].setdefault((position, label), []).append(moment - previous)
                if label.startswith("database"):
                    in_database += moment - previous
                previous = moment
            segments[name].setdefault((len(marks) + 1, "total"), []).append(end - start)
            totals[name]["database"].append(in_database)
            totals[name]["python"].append(end - start - in_database)
    lines = [f"median microseconds per segment of one request, {len(timed)} requests each"]
    for name in OPERATIONS:
        lines.append(f"  {name}")
        for (_, label), durations in sorted(segments[name].items()):
            lines.append(f"    {label:50} {statistics.median(durations) / 1000:8.0f}")
        for part in ("python", "database"):
            lines.append(f"    {f'(all {part})':50} {statistics.median(totals[name][part]) / 1000:8.0f}")
    return "\n".join(lines)


def profile(requester: Requester, name: str, timed: list[dict[str, Call]], limit: int) -> str:
    """cProfile over the requests of one operation: the functions with the most cumulative time."""
    profiler = cProfile.Profile()
    for calls in timed:
        requester.prepare(calls[name])
        profiler.enable()
        response = requester.send(calls[name])
        profiler.disable()
        requester.check(name, calls[name], response)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(limit)
    return f"{name}: {len(timed)} requests under cProfile (times include the profiler's overhead)\n{out.getvalue()}"


def run(
    backend: str,
    url: str | None,
    rounds: int,
    warmup: int,
    budget: float,
    seed: int,
    *,
    mode: str = "time",
    profile_name: str = "verify",
    profile_limit: int = 45,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="emailotp-bench-http-") as workdir:
        app = setup_django(database_settings(backend, url, Path(workdir)), http_settings)
        from django.core.management import call_command
        from django.db import connection

        call_command("migrate", verbosity=0, interactive=False)
        log(f"{backend} HTTP: preparing {warmup + COUNT_ROUNDS + rounds} rounds of users, sessions and challenges")
        all_rounds = prepare_rounds(warmup + COUNT_ROUNDS + rounds)
        warm = all_rounds[:warmup]
        counting = all_rounds[warmup : warmup + COUNT_ROUNDS]
        timed = all_rounds[warmup + COUNT_ROUNDS :]
        requester = Requester()
        for calls in warm:
            for name in OPERATIONS:
                requester.run(name, calls[name])
        if mode == "breakdown":
            return {"backend": backend, "report": breakdown(requester, timed)}
        if mode == "profile":
            return {"backend": backend, "report": profile(requester, profile_name, timed, profile_limit)}

        statements: dict[str, list[dict[str, Any]]] = {name: [] for name in OPERATIONS}
        for calls in counting:
            for name in OPERATIONS:
                statements[name].append(count_statements(requester, name, calls[name]))

        log(f"{backend} HTTP: timing up to {len(timed)} interleaved rounds (budget {budget:.0f} s)")
        rng = random.Random(seed)
        order = list(OPERATIONS)
        samples: dict[str, list[int]] = {name: [] for name in OPERATIONS}
        deadline = time.monotonic() + budget
        gc.collect()
        gc.disable()
        try:
            for done, calls in enumerate(timed, start=1):
                rng.shuffle(order)
                for name in order:
                    samples[name].append(requester.run(name, calls[name]))
                if done % 100 == 0:
                    gc.collect()
                    if time.monotonic() > deadline:
                        break
        finally:
            gc.enable()
        issued = warmup + COUNT_ROUNDS + len(samples["issue"])
        published = queued_messages(app)
        if published != issued:
            raise BenchError(f"{issued} challenges issued through the API but {published} send tasks on the queue")
        result: dict[str, Any] = {
            "backend": backend,
            "environment": environment(backend),
            "rounds": len(samples["issue"]),
            "published": published,
            "operations": {},
        }
        for name in OPERATIONS:
            totals = sorted({entry["total"] for entry in statements[name]})
            result["operations"][name] = {
                "median_us": statistics.median(samples[name]) / 1000,
                "p90_us": percentile(samples[name], 0.9) / 1000,
                "statements": max(totals),
                "statements_varied": len(totals) > 1,
                "sequence": statements[name][-1]["sequence"],
            }
        connection.close()
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("backend", choices=["sqlite", "postgresql"])
    parser.add_argument("--url", help="postgres://user@host:port/name (postgresql only)")
    parser.add_argument("--rounds", type=int, default=800)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--budget", type=float, default=30.0, help="stop timing after about this many seconds")
    parser.add_argument("--seed", type=int, default=3)
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--breakdown", action="store_true", help="median Python and database time per segment")
    what.add_argument("--profile", choices=OPERATIONS, help="cProfile the requests of one operation")
    parser.add_argument("--limit", type=int, default=45, help="rows of --profile output")
    args = parser.parse_args(argv)
    mode = "breakdown" if args.breakdown else "profile" if args.profile else "time"
    result = run(
        args.backend,
        args.url,
        args.rounds,
        args.warmup,
        args.budget,
        args.seed,
        mode=mode,
        profile_name=args.profile or "verify",
        profile_limit=args.limit,
    )
    if mode != "time":
        print(result["report"])
        return 0
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
