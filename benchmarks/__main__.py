"""``make bench``: run the benchmark on SQLite and PostgreSQL and print one table.

Environment:
  BENCH_DATABASE_URL  PostgreSQL to use (default postgres://postgres@127.0.0.1:5432/emailotp_bench). A database whose
                      name contains "bench" is dropped and created fresh, and dropped again at the end; any other
                      name must exist and is only migrated and written to.
  BENCH_ROUNDS        timed rounds per database (default 2000); BENCH_BUDGET caps their time (default 55 s each).
  BENCH_HTTP_ROUNDS   timed rounds of the HTTP level per database (default 800); BENCH_HTTP_BUDGET caps their
                      time (default 30 s each).
  BENCH_REDIS_URL     Redis for the sign-in timing (default redis://127.0.0.1:6379/15): its rate-limit cache, under a
                      key prefix of the run's own, and its Celery broker, on a queue it deletes at the end.
  BENCH_TIMING_REQUESTS  sign-in requests of each kind, known and unknown address (default 300).

``python -m benchmarks sign-in-timing`` (``make bench-timing``) runs only the sign-in timing: known against unknown
addresses on PostgreSQL and Redis (benchmarks/sign_in_timing.py). ``make bench`` runs it last, when both are there.

This is a report, not a test: it exits 0 whatever the numbers say, and non-zero only when something breaks.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from typing import Any
from urllib.parse import unquote, urlsplit

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/emailotp_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"
VERIFY_MAX_STATEMENTS = 3
VERIFY_MAX_RATIO = 2.0
ISSUE_MAX_STATEMENTS = 4
HTTP_VERIFY_MAX_RATIO = 1.5
# A floor whose p90 is this many times its median was measured on a busy machine.
NOISY_SPREAD = 1.75

LABELS = {
    "floor_update": "floor: conditional UPDATE by pk",
    "floor_select_update": "floor: SELECT + UPDATE by pk",
    "verify_correct": "verify-correct",
    "verify_wrong": "verify-wrong",
    "issue": "issue (+ enqueue)",
}


HTTP_LABELS = {
    "floor": "floor: DRF view, session + UPDATE",
    "verify": "POST challenges/{id}/verify/",
    "issue": "POST challenges/ (issue)",
}


class PostgresUnavailable(Exception):
    pass


def postgres_admin(url: str) -> tuple[Any, str, bool]:
    """A connection to the server's maintenance database, the bench database's name, and whether we own it."""
    import psycopg

    parts = urlsplit(url)
    name = unquote(parts.path[1:])
    if not name:
        raise PostgresUnavailable(f"BENCH_DATABASE_URL {url!r} names no database")
    try:
        admin = psycopg.connect(
            host=parts.hostname or "",
            port=parts.port or 5432,
            user=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
            dbname="postgres",
            autocommit=True,
            connect_timeout=3,
        )
    except psycopg.OperationalError as exc:
        raise PostgresUnavailable(str(exc).strip().splitlines()[0]) from exc
    return admin, name, "bench" in name


def recreate(admin: Any, name: str) -> None:
    from psycopg import sql

    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop(admin: Any, name: str) -> None:
    from psycopg import sql

    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def run_backend(backend: str, *extra: str, level: str = "engine") -> dict[str, Any]:
    """Run one level (the engine, or the HTTP level) on one database in a child process."""
    if level == "http":
        module = "benchmarks.http_level"
        rounds = os.environ.get("BENCH_HTTP_ROUNDS", "800")
        budget = os.environ.get("BENCH_HTTP_BUDGET", "30")
    else:
        module = "benchmarks.backend"
        rounds = os.environ.get("BENCH_ROUNDS", "2000")
        budget = os.environ.get("BENCH_BUDGET", "55")
    command = [sys.executable, "-m", module, backend, "--rounds", rounds, "--budget", budget, *extra]
    completed = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)  # noqa: S603
    if completed.returncode:
        raise SystemExit(f"bench: the {backend} {level} run failed (exit {completed.returncode}); see the error above")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def verdict(name: str, operation: dict[str, Any], ratio: float) -> tuple[str, str]:
    """The target for an operation and whether this run met it."""
    if name in ("verify_correct", "verify_wrong"):
        met = operation["statements"] <= VERIFY_MAX_STATEMENTS and ratio <= VERIFY_MAX_RATIO
        return f"<= {VERIFY_MAX_STATEMENTS} stmts, <= {VERIFY_MAX_RATIO:g}x", "PASS" if met else "FAIL"
    if name == "issue":
        met = operation["statements"] <= ISSUE_MAX_STATEMENTS
        return f"<= {ISSUE_MAX_STATEMENTS} stmts + enqueue", "PASS" if met else "FAIL"
    return "", ""


def statements_cell(name: str, operation: dict[str, Any]) -> str:
    cell = str(operation["statements"])
    if name == "issue":
        cell = f"{operation['own']} + {operation['after_commit']} = {operation['statements']}"
    return cell + ("*" if operation["statements_varied"] else "")


def print_report(results: list[dict[str, Any]], notes: list[str]) -> list[str]:
    """Print the engine's table; add notes about the run to ``notes``; return the names of missed targets."""
    header = ("database", "operation", "median us", "p90 us", "x floor", "x S+U", "SQL", "target", "result")
    rows: list[tuple[str, ...]] = []
    missed = []
    for number, result in enumerate(results):
        if number:
            rows.append(tuple("" for _ in header))
        operations = result["operations"]
        floor = operations["floor_update"]["median_us"]
        select_update = operations["floor_select_update"]["median_us"]
        for name, label in LABELS.items():
            operation = operations[name]
            ratio = operation["median_us"] / floor
            target, outcome = verdict(name, operation, ratio)
            if outcome == "FAIL":
                missed.append(f"{result['backend']} {label}")
            rows.append(
                (
                    result["backend"],
                    label,
                    f"{operation['median_us']:,.0f}",
                    f"{operation['p90_us']:,.0f}",
                    f"{ratio:.2f}x",
                    f"{operation['median_us'] / select_update:.2f}x",
                    statements_cell(name, operation),
                    target,
                    outcome,
                )
            )
    print()
    print("django-emailotp benchmark")
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"  machine: {os.cpu_count()} CPUs, {platform.machine()} {platform.system()}, load average {load}")
    for result in results:
        env = result["environment"]
        print(f"  {result['backend']}: {env['server']}; Python {env['python']}, Django {env['django']}")
        print(f"    {result['rounds']} interleaved rounds timed; {result['published']} send tasks published")
    print()
    print("\n".join(format_table(header, rows, {2, 3, 4, 5, 6})))
    print()
    print("Statements made by one call (transaction control in brackets, not counted):")
    for result in results:
        for name, label in LABELS.items():
            print(f"  {result['backend']:10} {label:32} {', '.join(result['operations'][name]['sequence'])}")
    print()
    print(
        "How to read it: wall-clock microseconds per call, median and 90th percentile over interleaved rounds.\n"
        "x floor = median / the median of the conditional-UPDATE floor in the same run (the targets use this);\n"
        "x S+U = median / the median of the SELECT + UPDATE floor. Floors and verify commit exactly once: the\n"
        "UPDATE floor in autocommit, the SELECT + UPDATE floor and verify inside one transaction.atomic().\n"
        "issue: SQL is 'its own transaction + its on_commit dispatch' (the UPDATE that marks the challenge\n"
        "queued, in autocommit); the time covers both commits and the real Celery publish (kombu memory://).\n"
        "* = the count differed between sampled calls; the largest is shown."
    )
    for result in results:
        floor = result["operations"]["floor_update"]
        spread = floor["p90_us"] / floor["median_us"]
        if spread > NOISY_SPREAD:
            notes.append(
                f"{result['backend']}: the floor's p90 is {spread:.1f}x its median, so the machine was busy (or the"
                " disk slow to flush) during this run; when commits dominate, every ratio drifts toward 1x. Rerun"
                " on a quieter machine before trusting the ratios."
            )
    return missed


def format_table(header: tuple[str, ...], rows: list[tuple[str, ...]], numeric: set[int]) -> list[str]:
    """A Markdown table; a row of empty cells becomes a blank separator row."""
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]

    def line(row: tuple[str, ...]) -> str:
        cells = [cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i]) for i, cell in enumerate(row)]
        return "| " + " | ".join(cells) + " |"

    return [line(header), "|" + "|".join("-" * (width + 2) for width in widths) + "|", *map(line, rows)]


def print_http_report(results: list[dict[str, Any]], notes: list[str]) -> list[str]:
    """Print the HTTP level's table; return the names of missed targets."""
    header = ("database", "request", "median us", "p90 us", "x floor", "SQL", "target", "result")
    rows: list[tuple[str, ...]] = []
    missed = []
    for number, result in enumerate(results):
        if number:
            rows.append(tuple("" for _ in header))
        operations = result["operations"]
        floor = operations["floor"]["median_us"]
        for name, label in HTTP_LABELS.items():
            operation = operations[name]
            ratio = operation["median_us"] / floor
            target = outcome = ""
            if name == "verify":
                target = f"<= {HTTP_VERIFY_MAX_RATIO:g}x"
                outcome = "PASS" if ratio <= HTTP_VERIFY_MAX_RATIO else "FAIL"
                if outcome == "FAIL":
                    missed.append(f"{result['backend']} HTTP {label}")
            statements = str(operation["statements"]) + ("*" if operation["statements_varied"] else "")
            rows.append(
                (
                    result["backend"],
                    label,
                    f"{operation['median_us']:,.0f}",
                    f"{operation['p90_us']:,.0f}",
                    f"{ratio:.2f}x",
                    statements,
                    target,
                    outcome,
                )
            )
    print()
    print("HTTP level: the REST API through Django's full stack (test Client -> WSGI handler -> middleware -> DRF)")
    for result in results:
        print(
            f"  {result['backend']}: {result['rounds']} interleaved rounds timed;"
            f" {result['published']} send tasks published"
        )
    print()
    print("\n".join(format_table(header, rows, {2, 3, 4, 5})))
    print()
    print("Statements made by one request, session load included (transaction control in brackets, not counted):")
    for result in results:
        for name, label in HTTP_LABELS.items():
            print(f"  {result['backend']:10} {label:34} {', '.join(result['operations'][name]['sequence'])}")
    print()
    print(
        "How to read it: wall-clock microseconds per request, from the test Client's post() to its return.\n"
        "Every request carries the session cookie of a signed-in user of its own (sessions in the database).\n"
        "The floor is a bare DRF APIView with the API's authentication (session) and IsAuthenticated: it loads\n"
        "the session and its user and makes one conditional UPDATE by primary key (autocommit), served through\n"
        "the same middleware. x floor = median / the floor's median in the same run. verify: a pending step-up\n"
        "challenge bound to the session, the right code. issue: purpose step_up for a user with no live challenge\n"
        "(a first step-up in the session: the binding nonce is stored, so the session is saved); the time covers\n"
        "the real Celery publish (kombu memory://). EMAIL_OTP_RATES are set to 1,000,000 per hour or day in the\n"
        "benchmark settings, since every request comes from 127.0.0.1; the limiter still counts in the cache."
    )
    for result in results:
        floor = result["operations"]["floor"]
        spread = floor["p90_us"] / floor["median_us"]
        if spread > NOISY_SPREAD:
            notes.append(
                f"{result['backend']} HTTP: the floor's p90 is {spread:.1f}x its median: the machine was busy during"
                " this run."
            )
    return missed


def redis_reachable(url: str) -> str:
    """ "" when Redis answers at ``url``, else why not."""
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        return str(exc)
    return ""


def run_sign_in_timing(url: str, notes: list[str]) -> None:
    """The sign-in timing (known against unknown addresses) in a child process, on a fresh bench database."""
    redis_url = os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL)
    problem = redis_reachable(redis_url)
    if problem:
        notes.append(f"Sign-in timing skipped: Redis at {redis_url} unreachable ({problem}). Set BENCH_REDIS_URL.")
        return
    try:
        admin, name, owned = postgres_admin(url)
    except PostgresUnavailable as exc:
        notes.append(f"Sign-in timing skipped: PostgreSQL unreachable for {url} ({exc}). Set BENCH_DATABASE_URL.")
        return
    requests = os.environ.get("BENCH_TIMING_REQUESTS", "300")
    command = [sys.executable, "-m", "benchmarks.sign_in_timing", "--url", url, "--redis", redis_url, "--requests"]
    with admin:
        if owned:
            recreate(admin, name)
        print(f"bench: sign-in timing (database {name!r}, Redis {redis_url})", file=sys.stderr, flush=True)
        try:
            completed = subprocess.run([*command, requests], stdout=subprocess.PIPE, text=True, check=False)  # noqa: S603
        finally:
            if owned:
                drop(admin, name)
    if completed.returncode:
        raise SystemExit(f"bench: the sign-in timing failed (exit {completed.returncode}); see the error above")
    print("\n".join(completed.stdout.rstrip().splitlines()[:-1]))


def main() -> int:
    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)
    notes: list[str] = []
    if sys.argv[1:] == ["sign-in-timing"]:
        run_sign_in_timing(url, notes)
        for note in notes:
            print(f"NOTE: {note}")
        return 0
    print("bench: SQLite (a file in a temporary directory)", file=sys.stderr, flush=True)
    results = [run_backend("sqlite")]
    http_results = [run_backend("sqlite", level="http")]
    try:
        admin, name, owned = postgres_admin(url)
    except PostgresUnavailable as exc:
        notes.append(f"PostgreSQL skipped: cannot connect for {url} ({exc}). Set BENCH_DATABASE_URL to measure it.")
    else:
        with admin:
            if owned:
                recreate(admin, name)
            print(f"bench: PostgreSQL (database {name!r})", file=sys.stderr, flush=True)
            try:
                results.append(run_backend("postgresql", "--url", url))
                if owned:
                    recreate(admin, name)
                http_results.append(run_backend("postgresql", "--url", url, level="http"))
            finally:
                if owned:
                    drop(admin, name)
    missed = print_report(results, notes)
    missed += print_http_report(http_results, notes)
    run_sign_in_timing(url, notes)
    for note in notes:
        print(f"NOTE: {note}")
    print()
    if missed:
        print("Targets missed in this run: " + "; ".join(missed))
    else:
        print("All targets met in this run.")
    print("(A report, not a test: machines are noisy, so this exits 0 whatever the numbers are.)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
