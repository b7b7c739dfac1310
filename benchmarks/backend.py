"""Measure one database in this process: ``python -m benchmarks.backend sqlite|postgresql [--url URL]``.

Prints one JSON document on stdout (progress goes to stderr); :mod:`benchmarks.__main__` runs this once per
database, because Django's settings can be configured only once per process.

Every round runs each operation once, on rows of its own, in a shuffled order, so drift in machine load hits all
operations alike. All rows are created before the timed rounds: only the call itself is timed.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import django
from django.conf import settings

from benchmarks.settings import bench_settings

ISSUE_PURPOSE = "verify_email"
CORRECT_PURPOSE = "login"
WRONG_PURPOSE = "step_up"
FLOOR_PURPOSE = "bench_floor"
FLOOR_SELECT_PURPOSE = "bench_floor_select"
# Statements that only delimit transactions; the targets do not count them.
TRANSACTION_CONTROL = re.compile(r"^\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE)\b", re.IGNORECASE)
TABLE = re.compile(r'\b(?:FROM|INTO|UPDATE)\s+"?([A-Za-z0-9_]+)"?', re.IGNORECASE)
COUNT_ROUNDS = 5


class BenchError(RuntimeError):
    """An operation did not do what it is supposed to do; the numbers would be meaningless."""


def log(message: str) -> None:
    print(f"  [bench] {message}", file=sys.stderr, flush=True)


def database_settings(backend: str, url: str | None, workdir: Path) -> dict[str, Any]:
    if backend == "sqlite":
        # A file, not :memory:, so each commit really goes through SQLite's journal and fsync.
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(workdir / "bench.sqlite3")}
    parts = urlsplit(url or "")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path[1:]),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
    }


def setup_django(
    database: dict[str, Any], make_settings: Callable[[dict[str, Any]], dict[str, Any]] = bench_settings
) -> Any:
    settings.configure(**make_settings(database))
    django.setup()
    from celery import Celery

    # A real Celery publish, to kombu's in-process transport: the enqueue costs what apply_async costs, minus
    # the network round trip to a broker.
    app = Celery("emailotp_bench", broker="memory://", set_as_current=True)
    app.conf.task_ignore_result = True
    app.set_default()
    import django_emailotp.tasks  # noqa: F401  (registers emailotp.send_code on the current app)

    return app


@dataclass(frozen=True)
class RoundRows:
    """What one round works on: a fresh user to issue for and one pending challenge per other operation."""

    user: Any
    correct_id: uuid.UUID
    correct_code: str
    wrong_id: uuid.UUID
    wrong_code: str
    floor_id: uuid.UUID
    floor_select_id: uuid.UUID


def prepare_rows(count: int) -> list[RoundRows]:
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from django_emailotp.crypto import code_hash, generate_code
    from django_emailotp.models import Challenge

    user_model = get_user_model()
    tag = uuid.uuid4().hex[:8]
    users = user_model.objects.bulk_create(
        [user_model(username=f"bench-{tag}-{i}", email=f"bench-{tag}-{i}@bench.example") for i in range(count)],
        batch_size=500,
    )
    now = timezone.now()
    # Far enough in the future that no row expires during the run; the engine's own TTL applies to issued rows.
    expires = now + timedelta(hours=1)

    def pending(user: Any, purpose: str, code: str = "") -> Challenge:
        pk = uuid.uuid4()
        return Challenge(
            id=pk,
            user=user,
            email=user.email,
            purpose=purpose,
            code_hash=code_hash(pk, code) if code else "",
            created_at=now,
            expires_at=expires,
            max_attempts=5,
        )

    rows, challenges = [], []
    for user in users:
        correct_code, wrong_target = generate_code(6), generate_code(6)
        wrong_code = f"{(int(wrong_target) + 1) % 10**6:06d}"
        correct = pending(user, CORRECT_PURPOSE, correct_code)
        wrong = pending(user, WRONG_PURPOSE, wrong_target)
        floor = pending(user, FLOOR_PURPOSE)
        floor_select = pending(user, FLOOR_SELECT_PURPOSE)
        challenges += [correct, wrong, floor, floor_select]
        rows.append(RoundRows(user, correct.pk, correct_code, wrong.pk, wrong_code, floor.pk, floor_select.pk))
    Challenge.objects.bulk_create(challenges, batch_size=500)
    return rows


# ---------------------------------------------------------------------------------------------------------------
# The operations. Each checks its own outcome (in memory, no extra query) so a broken run cannot look fast.


def floor_update(rows: RoundRows) -> None:
    """One conditional UPDATE by primary key, in its own autocommit transaction (it commits)."""
    from django.db.models import F

    from django_emailotp.models import Challenge, ChallengeStatus

    if not Challenge.objects.filter(pk=rows.floor_id, status=ChallengeStatus.PENDING).update(
        attempts=F("attempts") + 1
    ):
        raise BenchError("floor UPDATE matched no row")


def floor_select_update(rows: RoundRows) -> None:
    """A SELECT by primary key and the same conditional UPDATE, in one transaction (one commit, like verify)."""
    from django.db import transaction
    from django.db.models import F

    from django_emailotp.models import Challenge, ChallengeStatus

    with transaction.atomic():
        challenge = Challenge.objects.filter(pk=rows.floor_select_id).first()
        if challenge is None or not Challenge.objects.filter(pk=challenge.pk, status=ChallengeStatus.PENDING).update(
            attempts=F("attempts") + 1
        ):
            raise BenchError("floor SELECT + UPDATE found no row")


def verify_correct(rows: RoundRows) -> None:
    from django_emailotp import services

    result = services.verify_challenge(rows.correct_id, rows.correct_code)
    if not result.success:
        raise BenchError(f"verify with the right code failed: {result.reason}")


def verify_wrong(rows: RoundRows) -> None:
    from django_emailotp import services

    result = services.verify_challenge(rows.wrong_id, rows.wrong_code)
    if result.success or result.reason != services.VerifyReason.INVALID_CODE:
        raise BenchError(f"verify with a wrong code gave {result}")


def issue(rows: RoundRows) -> None:
    """issue_challenge as a view calls it: in autocommit, so its on_commit dispatch (publish the task and mark
    the challenge queued) runs inside the call, as it would before the response is sent."""
    from django_emailotp import services

    services.issue_challenge(user=rows.user, purpose=ISSUE_PURPOSE)


OPERATIONS: dict[str, Callable[[RoundRows], None]] = {
    "floor_update": floor_update,
    "floor_select_update": floor_select_update,
    "verify_correct": verify_correct,
    "verify_wrong": verify_wrong,
    "issue": issue,
}


# ---------------------------------------------------------------------------------------------------------------
# Counting statements


def describe(sql: str) -> str:
    """``SELECT emailotp_challenge FOR UPDATE``, ``[COMMIT]``: enough to read what an operation does."""
    text = sql.strip()
    if TRANSACTION_CONTROL.match(text):
        return f"[{text.split()[0].upper()}]"
    verb = text.split()[0].upper()
    table = TABLE.search(text)
    suffix = " FOR UPDATE" if re.search(r"\bFOR UPDATE\b", text, re.IGNORECASE) else ""
    return f"{verb} {table.group(1) if table else '?'}{suffix}"


def count_statements(name: str, rows: RoundRows) -> dict[str, Any]:
    """Run the operation once under query capture; split issue's statements at the commit of its transaction
    (after it, on_commit runs the dispatch: the publish and the UPDATE that marks the challenge queued)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        OPERATIONS[name](rows)
    described = [describe(query["sql"]) for query in captured.captured_queries]
    counted = [item for item in described if not item.startswith("[")]
    own = counted
    after_commit: list[str] = []
    if name == "issue" and "[COMMIT]" in described:
        cut = described.index("[COMMIT]")
        own = [item for item in described[:cut] if not item.startswith("[")]
        after_commit = [item for item in described[cut:] if not item.startswith("[")]
    return {"sequence": described, "total": len(counted), "own": len(own), "after_commit": len(after_commit)}


def check_issued(rows: RoundRows) -> None:
    from django_emailotp.models import Challenge, ChallengeStatus, DeliveryStatus

    issued = Challenge.objects.get(user=rows.user, purpose=ISSUE_PURPOSE, status=ChallengeStatus.PENDING)
    if issued.delivery_status != DeliveryStatus.QUEUED or issued.code_hash:
        raise BenchError(f"issued challenge is {issued.delivery_status!r}, expected queued with no code yet")


def queued_messages(app: Any) -> int:
    with app.connection_for_write() as conn:
        return int(conn.default_channel.queue_declare(queue="celery", passive=True).message_count)


# ---------------------------------------------------------------------------------------------------------------


def environment(backend: str) -> dict[str, str]:
    from django.db import connection

    info = {"python": platform.python_version(), "django": django.get_version()}
    with connection.cursor() as cursor:
        if backend == "sqlite":
            import sqlite3

            cursor.execute("PRAGMA journal_mode")
            journal = cursor.fetchone()[0]
            cursor.execute("PRAGMA synchronous")
            sync = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(cursor.fetchone()[0], "?")
            info["server"] = f"SQLite {sqlite3.sqlite_version} (file, journal_mode={journal}, synchronous={sync})"
        else:
            values = []
            for name in ("server_version", "fsync", "synchronous_commit"):
                cursor.execute(f"SHOW {name}")
                values.append(cursor.fetchone()[0])
            info["server"] = f"PostgreSQL {values[0]} (fsync={values[1]}, synchronous_commit={values[2]})"
    return info


def percentile(samples: list[int], fraction: float) -> float:
    ordered = sorted(samples)
    return float(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))])


LABELS_FOR_BREAKDOWN = {
    "floor_update": "floor: conditional UPDATE by pk (autocommit: the commit is inside the UPDATE)",
    "floor_select_update": "floor: SELECT + UPDATE by pk",
    "verify_correct": "verify-correct",
    "verify_wrong": "verify-wrong",
    "issue": "issue (+ enqueue; the publish is in the Python before the last UPDATE)",
}


@contextmanager
def statement_marks(marks: list[tuple[str, int]]) -> Iterator[None]:
    """Append (label, nanosecond clock) before and after every statement and commit of the default connection."""
    from django.db import connection as default_connection

    connection: Any = default_connection  # _commit is private: the one place every commit goes through

    def timed_statement(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        label = describe(sql).strip("[]")
        marks.append((f"python, then {label}", time.perf_counter_ns()))
        try:
            return execute(sql, params, many, context)
        finally:
            marks.append((f"database: {label}", time.perf_counter_ns()))

    commit = connection._commit

    def timed_commit() -> Any:
        marks.append(("python, then COMMIT", time.perf_counter_ns()))
        try:
            return commit()
        finally:
            marks.append(("database: COMMIT", time.perf_counter_ns()))

    connection._commit = timed_commit
    try:
        with connection.execute_wrapper(timed_statement):
            yield
    finally:
        connection._commit = commit


def breakdown(backend: str, all_rows: list[RoundRows]) -> str:
    """Where one call's time goes: Python before each statement (building the query, hashing, the model
    instance) and the database's part (the round trip, and the commit's flush to disk), as medians."""
    lines = [f"{backend}: median microseconds per segment of one call, {len(all_rows)} calls each"]
    for name, operation in OPERATIONS.items():
        segments: dict[tuple[int, str], list[int]] = {}
        for rows in all_rows:
            marks: list[tuple[str, int]] = []
            with statement_marks(marks):
                start = time.perf_counter_ns()
                operation(rows)
                end = time.perf_counter_ns()
            previous = start
            for position, (label, moment) in enumerate([*marks, ("python, then return", end)]):
                segments.setdefault((position, label), []).append(moment - previous)
                previous = moment
            segments.setdefault((len(marks) + 1, "total"), []).append(end - start)
        lines.append(f"  {LABELS_FOR_BREAKDOWN[name]}")
        for (_, label), durations in sorted(segments.items()):
            lines.append(f"    {label:26} {statistics.median(durations) / 1000:8.0f}")
    return "\n".join(lines)


def run(
    backend: str, url: str | None, rounds: int, warmup: int, budget: float, seed: int, *, explain: bool = False
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="emailotp-bench-") as workdir:
        app = setup_django(database_settings(backend, url, Path(workdir)))
        from django.core.management import call_command
        from django.db import connection

        call_command("migrate", verbosity=0, interactive=False)
        log(f"{backend}: preparing {warmup + COUNT_ROUNDS + rounds} rounds of rows")
        all_rows = prepare_rows(warmup + COUNT_ROUNDS + rounds)
        warm, counting, timed = (
            all_rows[:warmup],
            all_rows[warmup : warmup + COUNT_ROUNDS],
            all_rows[warmup + COUNT_ROUNDS :],
        )
        for rows in warm:
            for operation in OPERATIONS.values():
                operation(rows)
        if explain:
            gc.disable()
            report = breakdown(backend, timed)
            gc.enable()
            connection.close()
            return {"backend": backend, "breakdown": report}

        statements: dict[str, list[dict[str, Any]]] = {name: [] for name in OPERATIONS}
        for rows in counting:
            for name in OPERATIONS:
                statements[name].append(count_statements(name, rows))
            check_issued(rows)

        log(f"{backend}: timing up to {len(timed)} interleaved rounds (budget {budget:.0f} s)")
        rng = random.Random(seed)
        order = list(OPERATIONS)
        samples: dict[str, list[int]] = {name: [] for name in OPERATIONS}
        deadline = time.monotonic() + budget
        gc.collect()
        gc.disable()
        try:
            for done, rows in enumerate(timed, start=1):
                rng.shuffle(order)
                for name in order:
                    operation = OPERATIONS[name]
                    start = time.perf_counter_ns()
                    operation(rows)
                    samples[name].append(time.perf_counter_ns() - start)
                if done % 100 == 0:
                    gc.collect()
                    if time.monotonic() > deadline:
                        break
        finally:
            gc.enable()
        issued = warmup + COUNT_ROUNDS + len(samples["issue"])
        published = queued_messages(app)
        if published != issued:
            raise BenchError(f"{issued} challenges issued but {published} send tasks on the queue")
        result = {
            "backend": backend,
            "environment": environment(backend),
            "rounds": len(samples["issue"]),
            "published": published,
            "operations": {},
        }
        for name in OPERATIONS:
            counts = statements[name]
            totals = sorted({entry["total"] for entry in counts})
            result["operations"][name] = {
                "median_us": statistics.median(samples[name]) / 1000,
                "p90_us": percentile(samples[name], 0.9) / 1000,
                "statements": max(totals),
                "statements_varied": len(totals) > 1,
                "own": max(entry["own"] for entry in counts),
                "after_commit": max(entry["after_commit"] for entry in counts),
                "sequence": counts[-1]["sequence"],
            }
        connection.close()
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("backend", choices=["sqlite", "postgresql"])
    parser.add_argument("--url", help="postgres://user@host:port/name (postgresql only)")
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--budget", type=float, default=60.0, help="stop timing after about this many seconds")
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument(
        "--breakdown", action="store_true", help="instead of the timed rounds, show where each call's time goes"
    )
    args = parser.parse_args(argv)
    result = run(args.backend, args.url, args.rounds, args.warmup, args.budget, args.seed, explain=args.breakdown)
    if args.breakdown:
        print(result["breakdown"])
        return 0
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
