"""Sign-in timing, known against unknown addresses: ``python -m benchmarks.sign_in_timing --url URL --redis URL``.

SECURITY.md rule 8 (issue 10, finding 7): the answers must take the same time whether or not the address has an
account. This repeats the attack pass's measurement on PostgreSQL and Redis, through Django's whole HTTP stack (the
test Client runs the WSGI handler and every middleware): ``--requests`` sign-in requests (``POST
/api/otp/challenges/`` with ``purpose: sign_in``) for addresses of accounts and as many for addresses without one,
interleaved in shuffled pairs so drift in machine load hits both alike, each from a fresh client (no session yet,
as a stranger's first request), and then one wrong code for each challenge (``POST .../verify/``).

The rate-limit counters live in Redis (a key prefix of this run's own) and the send task is really published to a
Redis broker, on a queue of this run's own that is deleted at the end; no worker consumes it. Each group's median
and the difference of the medians (known minus unknown) are printed with a bootstrap 95% confidence interval
(``--resamples`` resamples of each group). A report, not a test: machines are noisy, and it exits 0 whatever the
numbers say. Prints the report on stdout and, last, one JSON line with the figures.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.backend import BenchError, database_settings, environment, log
from benchmarks.settings import HIGH_RATES, http_settings

CHALLENGES = "/api/otp/challenges/"
WRONG = "000000"
WARMUP = 20


def timing_settings(database: dict[str, Any], redis_url: str, queue: str) -> dict[str, Any]:
    base = http_settings(database)
    return {
        **base,
        "CACHES": {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": redis_url,
                "KEY_PREFIX": f"emailotp-bench-{queue}",
            }
        },
        "EMAIL_OTP_SIGN_IN_ENABLED": True,
        "EMAIL_OTP_CELERY_QUEUE": queue,
        "EMAIL_OTP_RATES": HIGH_RATES,
        "SILENCED_SYSTEM_CHECKS": [],
    }


def setup(database: dict[str, Any], redis_url: str, queue: str) -> Any:
    import django
    from django.conf import settings

    settings.configure(**timing_settings(database, redis_url, queue))
    django.setup()
    from celery import Celery

    app = Celery("emailotp_bench_timing", broker=redis_url, set_as_current=True)
    app.conf.task_ignore_result = True
    app.conf.broker_connection_timeout = 3
    app.set_default()
    import django_emailotp.tasks  # noqa: F401  (registers emailotp.send_code on the current app)

    return app


def addresses(count: int, tag: str) -> tuple[list[str], list[str]]:
    """Addresses of accounts (created here) and addresses without one, of the same length and shape."""
    from django.contrib.auth import get_user_model

    known = [f"k{tag}{i:05d}@bench.example" for i in range(count)]
    unknown = [f"u{tag}{i:05d}@bench.example" for i in range(count)]
    user_model = get_user_model()
    user_model.objects.bulk_create(
        [user_model(username=address.split("@")[0], email=address) for address in known], batch_size=500
    )
    return known, unknown


def timed(send: Any) -> tuple[Any, int, int]:
    """The response, the wall-clock nanoseconds and this process's CPU nanoseconds of one request."""
    cpu, start = time.process_time_ns(), time.perf_counter_ns()
    response = send()
    return response, time.perf_counter_ns() - start, time.process_time_ns() - cpu


def sign_in(address: str) -> dict[str, int]:
    """One stranger's request for a sign-in code, then one wrong code: nanoseconds of each request."""
    from django.test import Client

    client = Client()
    body = {"purpose": "sign_in", "email": address}
    issued, send_ns, send_cpu = timed(lambda: client.post(CHALLENGES, body, content_type="application/json"))
    if issued.status_code != 202:
        raise BenchError(f"sign-in for {address}: {issued.status_code} {issued.content!r}")
    verify = f"{CHALLENGES}{issued.json()['id']}/verify/"
    wrong, verify_ns, verify_cpu = timed(lambda: client.post(verify, {"code": WRONG}, content_type="application/json"))
    if wrong.status_code != 400 or wrong.json()["error"] != "invalid_code":
        raise BenchError(f"wrong code for {address}: {wrong.status_code} {wrong.content!r}")
    return {"send": send_ns, "verify": verify_ns, "send_cpu": send_cpu, "verify_cpu": verify_cpu}


def median_difference_ci(
    known: list[int], unknown: list[int], resamples: int, rng: random.Random
) -> tuple[float, float, float]:
    """The difference of the medians (known minus unknown) and its bootstrap 95% interval, in milliseconds."""
    point = statistics.median(known) - statistics.median(unknown)
    differences = sorted(
        statistics.median(rng.choices(known, k=len(known))) - statistics.median(rng.choices(unknown, k=len(unknown)))
        for _ in range(resamples)
    )
    low = differences[int(0.025 * resamples)]
    high = differences[min(resamples - 1, int(0.975 * resamples))]
    return point / 1e6, low / 1e6, high / 1e6


def measure(requests: int, resamples: int, seed: int) -> dict[str, Any]:
    from django.core.management import call_command

    from django_emailotp.models import Challenge

    call_command("migrate", verbosity=0, interactive=False)
    rng = random.Random(seed)
    tag = uuid.uuid4().hex[:4]
    known, unknown = addresses(requests + WARMUP, tag)
    pairs = list(zip(known, unknown, strict=True))
    for known_address, unknown_address in pairs[:WARMUP]:
        sign_in(known_address)
        sign_in(unknown_address)
    samples: dict[str, dict[str, list[int]]] = {
        name: {"known": [], "unknown": []} for name in ("send", "verify", "send_cpu", "verify_cpu")
    }
    gc.collect()
    gc.disable()  # a collection during one request would charge its whole cost to one side
    try:
        for known_address, unknown_address in pairs[WARMUP:]:
            order = [("known", known_address), ("unknown", unknown_address)]
            rng.shuffle(order)
            for kind, address in order:
                for name, nanoseconds in sign_in(address).items():
                    samples[name][kind].append(nanoseconds)
    finally:
        gc.enable()
    sent = Challenge.objects.filter(email__in=known[WARMUP:], send_email=True).count()
    unsent = Challenge.objects.filter(email__in=unknown[WARMUP:], send_email=False).count()
    if (sent, unsent) != (requests, requests):
        raise BenchError(f"expected {requests} sent and {requests} unsent challenges, found {sent} and {unsent}")
    results: dict[str, Any] = {"requests": requests, "resamples": resamples, "seed": seed}
    for request, groups in samples.items():
        difference, low, high = median_difference_ci(groups["known"], groups["unknown"], resamples, rng)
        results[request] = {
            "known_median_ms": statistics.median(groups["known"]) / 1e6,
            "unknown_median_ms": statistics.median(groups["unknown"]) / 1e6,
            "difference_ms": difference,
            "ci95_ms": [low, high],
        }
    return results


def report(results: dict[str, Any], env: dict[str, str]) -> str:
    lines = [
        "",
        "Sign-in timing: known against unknown addresses (SECURITY.md rule 8), PostgreSQL + Redis, HTTP stack",
        f"  {env['server']}; Python {env['python']}, Django {env['django']}",
        f"  {results['requests']} requests of each kind, interleaved in shuffled pairs; bootstrap 95% CI from"
        f" {results['resamples']} resamples",
        "",
        "| request | known median ms | unknown median ms | difference ms (known - unknown) | 95% CI ms |",
        "|---|---:|---:|---:|---|",
    ]
    rows = (
        ("send", "POST challenges/ (sign_in), wall clock"),
        ("verify", "POST challenges/{id}/verify/ (wrong), wall clock"),
        ("send_cpu", "the same send, this process's CPU"),
        ("verify_cpu", "the same verify, this process's CPU"),
    )
    for request, label in rows:
        row = results[request]
        low, high = row["ci95_ms"]
        lines.append(
            f"| {label} | {row['known_median_ms']:.2f} | {row['unknown_median_ms']:.2f} | {row['difference_ms']:+.2f} |"
            f" {low:+.2f} to {high:+.2f} |"
        )
    lines.append("")
    lines.append(
        "An interval that contains 0 means no difference could be told apart at this sample size. Wall clock is what\n"
        "a client sees (database and Redis included); CPU is the Python side alone, which other load disturbs less."
    )
    return "\n".join(lines)


def purge(app: Any, queue: str) -> None:
    with app.connection_for_write() as conn:
        conn.default_channel.queue_delete(queue=queue)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="postgres://user@host:port/name (migrated and written to)")
    parser.add_argument("--redis", required=True, help="redis://host:port/db: rate-limit cache and Celery broker")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    queue = f"emailotp-bench-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as workdir:
        app = setup(database_settings("postgresql", args.url, Path(workdir)), args.redis, queue)
        try:
            log(f"sign-in timing: {args.requests} requests of each kind")
            results = measure(args.requests, args.resamples, args.seed)
        finally:
            purge(app, queue)
        env = environment("postgresql")
    print(report(results, env))
    print(json.dumps({"environment": env, **results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
