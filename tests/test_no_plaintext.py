"""The plaintext code exists only in the email: not in any table, the session, the cache, the audit trail or logs.

The scanners read every store raw; a positive control proves each of them finds a planted code, so the main test
fails the day any store starts keeping the code.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import re
from collections.abc import Iterable
from typing import Any

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.core.cache import cache, caches
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache
from django.core.mail import EmailMessage
from django.db import connection
from django.test import Client

from django_emailotp.crypto import code_hash
from django_emailotp.models import AuditEvent, Challenge, ChallengeStatus
from tests.conftest import code_from
from tests.test_issue import Capture, wrong_code


def database_hits(needle: str) -> list[str]:
    """``table.column`` of every cell, in every table, whose text contains ``needle``."""
    hits = []
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            columns = [column.name for column in connection.introspection.get_table_description(cursor, table)]
            cells = ", ".join(f"CAST({quote(column)} AS TEXT)" for column in columns)
            # Identifiers come from the database's own catalogue and are quoted by the backend.
            cursor.execute(f"SELECT {cells} FROM {quote(table)}")  # noqa: S608
            for row in cursor.fetchall():
                hits.extend(
                    f"{table}.{column}" for column, cell in zip(columns, row, strict=True) if cell and needle in cell
                )
    return hits


def session_hits(needle: str) -> list[str]:
    """Keys of stored sessions whose decoded data contains ``needle`` (the table scan sees only the encoding)."""
    return [
        session.session_key
        for session in Session.objects.all()
        if needle in json.dumps(session.get_decoded(), default=str)
    ]


def _value_text(raw: bytes) -> str:
    try:
        return repr(pickle.loads(raw))  # noqa: S301 - our own test cache
    except Exception:
        return raw.decode("utf-8", "replace")


def _redis_entries(location: str) -> Iterable[tuple[bytes, list[bytes]]]:
    import redis

    client = redis.Redis.from_url(location)
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        if kind == "string":
            values = [client.get(key) or b""]
        elif kind == "hash":
            values = [part for pair in client.hgetall(key).items() for part in pair]
        elif kind == "list":
            values = list(client.lrange(key, 0, -1))
        elif kind == "set":
            values = list(client.smembers(key))
        elif kind == "zset":
            values = list(client.zrange(key, 0, -1))
        else:
            values = []
        yield key, values


def cache_hits(needle: str) -> list[str]:
    """Keys, in every configured cache (LocMem in-process, Redis on the server), whose key or value holds ``needle``."""
    hits = []
    for alias in settings.CACHES:
        backend = caches[alias]
        if isinstance(backend, LocMemCache):
            entries: Iterable[tuple[Any, list[bytes]]] = [
                (key, [value])
                for key, value in backend._cache.items()  # the store itself: no API lists LocMem keys
            ]
        elif isinstance(backend, RedisCache):
            entries = [entry for location in backend._servers for entry in _redis_entries(location)]
        else:
            pytest.fail(f"no scanner for cache backend {type(backend).__name__}")
        for key, values in entries:
            key_text = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
            texts = [key_text, *(_value_text(value) for value in values)]
            if any(needle in text for text in texts) or any(needle.encode() in value for value in values):
                hits.append(f"{alias}:{key_text}")
    return hits


def everywhere(needle: str) -> dict[str, list[str]]:
    return {"database": database_hits(needle), "session": session_hits(needle), "cache": cache_hits(needle)}


@pytest.fixture
def clean_redis() -> Iterable[None]:
    # With REDIS_URL the cache is this run's own Redis database: start empty so hits are ours.
    cache.clear()
    yield
    cache.clear()


@pytest.mark.django_db
@pytest.mark.usefixtures("clean_redis")
def test_the_code_is_nowhere_but_in_the_email(
    user: Any,
    client: Client,
    django_capture_on_commit_callbacks: Capture,
    mailoutbox: list[EmailMessage],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="django_emailotp")
    client.force_login(user)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/try-code/send/", HTTP_USER_AGENT="pytest-agent/1.0")
    assert (response.status_code, response["Location"]) == (302, "/try-code/")
    [message] = mailoutbox
    code = code_from(message)
    challenge = Challenge.objects.get()
    assert client.session["demo_challenge_id"] == str(challenge.pk)

    # The only trace of the code is its keyed hash, on the challenge row, while the code is live.
    assert re.fullmatch(r"[0-9a-f]{64}", challenge.code_hash)
    assert challenge.code_hash == code_hash(challenge.pk, code)
    assert everywhere(code) == {"database": [], "session": [], "cache": []}
    assert everywhere(challenge.code_hash) == {"database": ["emailotp_challenge.code_hash"], "session": [], "cache": []}
    assert everywhere(hashlib.sha256(code.encode()).hexdigest()) == {"database": [], "session": [], "cache": []}
    assert code not in client.get("/try-code/").content.decode()

    # A wrong guess and the right code through the example site's form; the hash is wiped once used.
    response = client.post("/try-code/", {"code": wrong_code(code)})
    assert "Not accepted (invalid_code). Attempts left: 4." in response.content.decode()
    response = client.post("/try-code/", {"code": code})
    assert (response.status_code, response["Location"]) == (302, "/try-code/")
    challenge.refresh_from_db()
    assert (challenge.status, challenge.code_hash) == (ChallengeStatus.VERIFIED, "")
    assert everywhere(code) == {"database": [], "session": [], "cache": []}

    events = list(AuditEvent.objects.order_by("id"))
    assert [event.event for event in events] == [
        "challenge_issued",
        "challenge_sent",
        "verify_failed",
        "verify_succeeded",
    ]
    for event in events:
        fields = json.dumps({field.attname: getattr(event, field.attname) for field in event._meta.fields}, default=str)
        assert code not in fields
        assert "alice@example.com" not in fields

    logged = [(record.getMessage(), repr(record.args), record.name) for record in caplog.records]
    assert all(code not in text for entry in logged for text in entry)
    assert code not in caplog.text


@pytest.mark.django_db
@pytest.mark.usefixtures("clean_redis")
def test_the_scanners_find_a_planted_code(user: Any, client: Client) -> None:
    planted = "the code is 482916"
    assert everywhere("482916") == {"database": [], "session": [], "cache": []}
    Challenge.objects.create(
        user=user,
        email=user.email,
        purpose="login",
        action=planted,
        created_at="2026-03-02T09:00:00Z",
        expires_at="2026-03-02T09:05:00Z",
        max_attempts=5,
    )
    client.force_login(user)
    session = client.session
    session["note"] = planted
    session.save()
    cache.set("note", planted)

    found = everywhere("482916")
    assert found["database"] == ["emailotp_challenge.action"]
    assert found["session"] == [session.session_key]
    assert len(found["cache"]) == 1
