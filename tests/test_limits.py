"""Rate limits on sending and verifying codes, through the HTML pages, the API and the services.

Counters live in the test cache (LocMem on the embedded run, Redis in the services suite); conftest empties it
before each test. Windows are crossed with time_machine: django-ratelimit's windows follow time.time().
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.core import mail
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache
from django.test import Client, RequestFactory, override_settings

from django_emailotp import limits
from django_emailotp.models import AuditEvent, AuditEventType, Challenge
from django_emailotp.services import VerifyReason, issue_challenge, verify_challenge
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SEND_URL = "/otp/send/"
VERIFY_URL = "/otp/verify/"
API_CREATE = "/api/otp/challenges/"
ISSUE_KEYS = {"id", "purpose", "expires_at", "resend_available_at", "email_hint"}
WRONG_CODE = "000000"


@pytest.fixture(autouse=True)
def no_cooldown(settings: Any) -> None:
    # The resend cooldown is its own limit (tested elsewhere); without it each send reaches the rate limits.
    settings.EMAIL_OTP_RESEND_COOLDOWN = 0


@pytest.fixture
def clock() -> Iterator[Any]:
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


@pytest.fixture
def alice(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def send_html(client: Client, capture: Any, ip: str = "192.0.2.10", **extra: Any) -> Any:
    with capture(execute=True):
        return client.post(SEND_URL, {"purpose": "step_up"}, REMOTE_ADDR=ip, **extra)


def send_api(client: Client, capture: Any, ip: str = "192.0.2.10") -> Any:
    with capture(execute=True):
        return client.post(API_CREATE, {"purpose": "step_up"}, content_type="application/json", REMOTE_ADDR=ip)


def limited(reason: str | None = None) -> list[AuditEvent]:
    events = AuditEvent.objects.filter(event=AuditEventType.RATE_LIMITED).order_by("id")
    return list(events.filter(reason=reason) if reason else events)


def page_notice(client: Client) -> str:
    page = client.get(f"{VERIFY_URL}?purpose=step_up").content.decode()
    start = page.index('class="emailotp-notice')
    return page[start : page.index("</div>", start)]


@override_settings(EMAIL_OTP_RATES={"send_per_ip": "3/h"})
def test_per_ip_send_limit_answers_429_with_retry_after_on_the_page_and_the_api(
    user: Any, alice: Client, other_user: Any, django_capture_on_commit_callbacks: Any, clock: Any
) -> None:
    for _ in range(3):
        assert send_html(alice, django_capture_on_commit_callbacks).status_code == 302
    refused = send_html(alice, django_capture_on_commit_callbacks)
    assert refused.status_code == 429
    retry_after = int(refused["Retry-After"])
    assert 1 <= retry_after <= 3600
    minutes = -(-retry_after // 60)
    assert f"Too many requests. Please try again in {minutes} minutes." in refused.content.decode()
    assert (Challenge.objects.count(), len(mail.outbox)) == (3, 3)
    [event] = limited()
    assert (event.reason, event.outcome, event.user_id, str(event.ip_address)) == (
        "send_per_ip",
        "failure",
        user.pk,
        "192.0.2.10",
    )
    assert event.data == {"retry_after": retry_after}

    # The API shares the per-IP count: another user from the same address is refused at once.
    bob = Client()
    bob.force_login(other_user)
    api = send_api(bob, django_capture_on_commit_callbacks)
    assert api.status_code == 429
    assert api["Retry-After"] == str(retry_after)
    assert api.json() == {
        "error": "rate_limited",
        "message": f"Too many requests. Please try again in {minutes} minutes.",
        "retry_after": retry_after,
    }
    assert (Challenge.objects.count(), len(mail.outbox)) == (3, 3)
    # A fresh address is counted apart; Retry-After later, the first address gets in again (not a second before).
    assert send_api(bob, django_capture_on_commit_callbacks, ip="192.0.2.11").status_code == 202
    clock.shift(timedelta(seconds=retry_after - 1))
    assert send_api(bob, django_capture_on_commit_callbacks).status_code == 429
    clock.shift(timedelta(seconds=1))
    assert send_api(bob, django_capture_on_commit_callbacks).status_code == 202
    assert (Challenge.objects.count(), len(mail.outbox)) == (5, 5)


def test_per_user_limit_answers_exactly_like_an_accepted_send_without_mail(
    user: Any, alice: Client, django_capture_on_commit_callbacks: Any, clock: Any
) -> None:
    accepted = [send_html(alice, django_capture_on_commit_callbacks) for _ in range(5)]
    accepted_notice = page_notice(alice)
    refused = send_html(alice, django_capture_on_commit_callbacks)

    assert [r.status_code for r in accepted] == [302] * 5
    assert (refused.status_code, refused["Location"]) == (302, accepted[-1]["Location"])
    assert refused.cookies.keys() == accepted[-1].cookies.keys()
    assert page_notice(alice) == accepted_notice
    assert "We sent a code to a***@example.com. It expires in 5 minutes." in accepted_notice
    # A real challenge, so the page shows the code box as after any send, but no email was sent for it.
    assert (Challenge.objects.count(), len(mail.outbox)) == (6, 5)
    refused_row = Challenge.objects.get(send_email=False)
    assert (refused_row.delivery_status, refused_row.code_hash) == ("skipped", "")
    assert 'autocomplete="one-time-code"' in alice.get(refused["Location"]).content.decode()
    [event] = limited()
    assert (event.reason, event.user_id, event.purpose) == ("send_per_user", user.pk, "step_up")
    assert event.data["answered_as"] == "accepted"
    assert 1 <= event.data["retry_after"] <= 3600

    # The API: the same 202 body shape; a challenge exists behind it but no mail went out.
    api = send_api(alice, django_capture_on_commit_callbacks)
    assert api.status_code == 202
    body = api.json()
    assert set(body) == ISSUE_KEYS
    assert (body["purpose"], body["email_hint"]) == ("step_up", "a***@example.com")
    assert Challenge.objects.filter(pk=body["id"], send_email=False).exists()
    assert (Challenge.objects.count(), len(mail.outbox), len(limited("send_per_user"))) == (7, 5, 2)

    clock.shift(timedelta(hours=1))
    assert send_api(alice, django_capture_on_commit_callbacks).status_code == 202
    assert (Challenge.objects.count(), len(mail.outbox)) == (8, 6)


def test_daily_per_user_limit_holds_across_hourly_windows(
    user: Any, alice: Client, django_capture_on_commit_callbacks: Any, clock: Any
) -> None:
    # Daily windows start at a per-key offset: begin at the start of this user's, so four hours fit in it.
    daily = limits.peek(limits.SEND_PER_USER_DAILY, str(user.pk))
    assert daily is not None
    clock.shift(timedelta(seconds=daily.retry_after))
    for _hour in range(4):
        for _ in range(5):
            assert send_api(alice, django_capture_on_commit_callbacks).status_code == 202
        clock.shift(timedelta(hours=1, seconds=1))
    assert len(mail.outbox) == 20
    assert limited() == []

    decoy = send_api(alice, django_capture_on_commit_callbacks)
    assert decoy.status_code == 202
    assert len(mail.outbox) == 20
    assert [e.reason for e in limited()] == ["send_per_user_daily"]

    clock.shift(timedelta(days=1) - timedelta(hours=4, seconds=4))
    assert send_api(alice, django_capture_on_commit_callbacks).status_code == 202
    assert len(mail.outbox) == 21


@override_settings(EMAIL_OTP_RATES={"send_per_user": None, "send_per_user_daily": None, "send_per_address": "2/h"})
def test_per_address_limit_is_shared_by_every_account_using_the_address(
    user: Any, django_capture_on_commit_callbacks: Any, clock: Any
) -> None:
    twin = UserFactory(username="alice2", email="Alice@Example.com")
    with django_capture_on_commit_callbacks(execute=True):
        issue_challenge(user=user, purpose="step_up")
    with django_capture_on_commit_callbacks(execute=True):
        issue_challenge(user=twin, purpose="step_up")
    with django_capture_on_commit_callbacks(execute=True):
        decoy = issue_challenge(user=twin, purpose="step_up")
    assert Challenge.objects.get(pk=decoy.pk).send_email is False
    assert len(mail.outbox) == 2
    [event] = limited()
    assert (event.reason, event.user_id, event.data["answered_as"]) == ("send_per_address", twin.pk, "accepted")
    assert event.email_pseudonym
    assert "alice" not in event.email_pseudonym.lower()


@override_settings(EMAIL_OTP_RATES={"send_per_user": "2/h", "send_per_user_daily": None})
def test_rates_setting_overrides_a_limit_and_none_switches_one_off(
    user: Any, django_capture_on_commit_callbacks: Any, clock: Any
) -> None:
    for _ in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            issue_challenge(user=user, purpose="step_up")
    assert (len(mail.outbox), [e.reason for e in limited()]) == (2, ["send_per_user"])

    with override_settings(EMAIL_OTP_RATES={"send_per_user": None, "send_per_address": None}):
        for _ in range(10):
            with django_capture_on_commit_callbacks(execute=True):
                issue_challenge(user=user, purpose="step_up")
    assert (len(mail.outbox), len(limited())) == (12, 1)


def cache_contents() -> str:
    """Every key and value in the rate-limit cache, as text."""
    backend = caches["default"]
    if isinstance(backend, LocMemCache):
        return repr(list(backend._cache.items()))
    assert isinstance(backend, RedisCache), backend
    client = backend._cache.get_client()
    return repr([(key, client.get(key)) for key in client.keys("*")])


@override_settings(EMAIL_OTP_RATES={"verify_failures_per_ip": "50/h"})
def test_counters_are_keyed_hashes_never_the_address_or_ip(
    user: Any, alice: Client, django_capture_on_commit_callbacks: Any
) -> None:
    send_html(alice, django_capture_on_commit_callbacks, ip="203.0.113.77")
    challenge = Challenge.objects.get()
    alice.post(VERIFY_URL, {"purpose": "step_up", "code": WRONG_CODE}, REMOTE_ADDR="203.0.113.77")
    assert Challenge.objects.get().attempts == 1

    contents = cache_contents()
    assert contents.count("rl:") >= 6  # five send counters and the failed-verification one
    for raw in ("alice@example.com", "alice", "203.0.113.77", "203.0.113", str(challenge.pk)):
        assert raw not in contents


@override_settings(EMAIL_OTP_RATES={"verify_failures_per_ip": "3/h"})
def test_failed_verifications_per_ip_answer_429_and_leave_the_challenge_untouched(
    user: Any, alice: Client, django_capture_on_commit_callbacks: Any, clock: Any
) -> None:
    send_html(alice, django_capture_on_commit_callbacks)
    challenge = Challenge.objects.get()
    data = {"purpose": "step_up", "code": WRONG_CODE}
    # Malformed input costs no attempt but counts toward the limit.
    assert alice.post(VERIFY_URL, {"purpose": "step_up", "code": "12a456"}, REMOTE_ADDR="192.0.2.10").status_code == 400
    for _ in range(2):
        assert alice.post(VERIFY_URL, data, REMOTE_ADDR="192.0.2.10").status_code == 400
    challenge.refresh_from_db()
    assert challenge.attempts == 2

    page = alice.post(VERIFY_URL, data, REMOTE_ADDR="192.0.2.10")
    assert page.status_code == 429
    retry_after = int(page["Retry-After"])
    assert 1 <= retry_after <= 3600
    assert "Too many attempts from your network. Please try again later." in page.content.decode()

    api = alice.post(
        f"/api/otp/challenges/{challenge.pk}/verify/",
        {"code": WRONG_CODE},
        content_type="application/json",
        REMOTE_ADDR="192.0.2.10",
    )
    assert (api.status_code, api["Retry-After"]) == (429, str(retry_after))
    assert api.json() == {
        "error": "rate_limited",
        "message": "Too many attempts from your network. Please try again later.",
        "retry_after": retry_after,
    }
    challenge.refresh_from_db()
    assert (challenge.attempts, challenge.status) == (2, "pending")
    events = limited("verify_failures_per_ip")
    assert [(e.challenge_id, str(e.ip_address), e.data) for e in events] == [
        (challenge.pk, "192.0.2.10", {"retry_after": retry_after})
    ] * 2
    # Another network may still try; this one may again once the window ends.
    assert alice.post(VERIFY_URL, data, REMOTE_ADDR="192.0.2.99").status_code == 400
    challenge.refresh_from_db()
    assert challenge.attempts == 3
    clock.shift(timedelta(seconds=retry_after))
    send_html(alice, django_capture_on_commit_callbacks)
    fresh = Challenge.objects.latest("created_at")
    assert alice.post(VERIFY_URL, data, REMOTE_ADDR="192.0.2.10").status_code == 400
    fresh.refresh_from_db()
    assert (fresh.pk != challenge.pk, fresh.attempts) == (True, 1)


@override_settings(EMAIL_OTP_RATES={"verify_failures_per_ip": "2/h"})
def test_every_failure_counts_per_ip_in_the_service(user: Any, django_capture_on_commit_callbacks: Any) -> None:
    request = RequestFactory().post("/", REMOTE_ADDR="198.51.100.4")
    with django_capture_on_commit_callbacks(execute=True):
        challenge = issue_challenge(user=user, purpose="step_up")
    assert verify_challenge(challenge.pk, "abc", request=request).reason == VerifyReason.MALFORMED
    assert verify_challenge("not-a-uuid", WRONG_CODE, request=request).reason == VerifyReason.NOT_FOUND
    refused = verify_challenge(challenge.pk, WRONG_CODE, request=request)
    assert (refused.success, refused.reason, refused.challenge) == (False, VerifyReason.RATE_LIMITED, None)
    assert 1 <= (refused.retry_after or 0) <= 3600
    challenge.refresh_from_db()
    assert challenge.attempts == 0


@override_settings(EMAIL_OTP_TRUSTED_PROXY_COUNT=1, EMAIL_OTP_RATES={"send_per_ip": "2/h"})
def test_behind_one_proxy_the_limit_follows_the_right_most_forwarded_entry(
    user: Any, other_user: Any, alice: Client, django_capture_on_commit_callbacks: Any, clock: Any
) -> None:
    proxy = "10.0.0.1"
    for spoofed in ("1.1.1.1", "2.2.2.2"):
        forwarded = f"{spoofed}, 203.0.113.7"
        response = send_html(alice, django_capture_on_commit_callbacks, ip=proxy, HTTP_X_FORWARDED_FOR=forwarded)
        assert response.status_code == 302
    # A new spoofed left-most entry does not make a new client.
    evading = send_html(
        alice, django_capture_on_commit_callbacks, ip=proxy, HTTP_X_FORWARDED_FOR="3.3.3.3, 203.0.113.7"
    )
    assert evading.status_code == 429
    assert [str(e.ip_address) for e in limited("send_per_ip")] == ["203.0.113.7"]
    assert {str(c.ip_address) for c in Challenge.objects.all()} == {"203.0.113.7"}

    # Someone naming the limited address on the left is judged by their own address.
    bob = Client()
    bob.force_login(other_user)
    framing = send_html(
        bob, django_capture_on_commit_callbacks, ip=proxy, HTTP_X_FORWARDED_FOR="203.0.113.7, 198.51.100.9"
    )
    assert framing.status_code == 302
    assert Challenge.objects.filter(user=other_user).get().ip_address == "198.51.100.9"


DEAD_CACHE = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",
        "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
    }
}


def test_a_dead_cache_fails_closed_with_a_logged_error(
    user: Any, alice: Client, django_capture_on_commit_callbacks: Any, caplog: pytest.LogCaptureFixture
) -> None:
    send_html(alice, django_capture_on_commit_callbacks)
    challenge = Challenge.objects.get()
    assert len(mail.outbox) == 1
    caplog.set_level(logging.ERROR, logger="django_emailotp")

    with override_settings(CACHES=DEAD_CACHE):
        page = send_html(alice, django_capture_on_commit_callbacks)
        api = send_api(alice, django_capture_on_commit_callbacks)
        verify_page = alice.post(VERIFY_URL, {"purpose": "step_up", "code": WRONG_CODE})
        verify_api = alice.post(
            f"/api/otp/challenges/{challenge.pk}/verify/", {"code": WRONG_CODE}, content_type="application/json"
        )

    for response in (page, verify_page):
        assert (response.status_code, response["Retry-After"]) == (503, "30")
        assert "This is unavailable for a moment. Please try again shortly." in response.content.decode()
    for response in (api, verify_api):
        assert (response.status_code, response["Retry-After"]) == (503, "30")
        assert response.json() == {
            "error": "temporarily_unavailable",
            "message": "This is unavailable for a moment. Please try again shortly.",
            "retry_after": 30,
        }
    assert (Challenge.objects.count(), len(mail.outbox)) == (1, 1)
    challenge.refresh_from_db()
    assert (challenge.attempts, challenge.status) == (0, "pending")
    failures = [r for r in caplog.records if "rate-limit cache failed" in r.getMessage()]
    assert len(failures) == 4
    assert all(r.levelno == logging.ERROR for r in failures)


def test_a_success_gives_its_count_back(user: Any, django_capture_on_commit_callbacks: Any) -> None:
    """Failures are counted before the code is checked (so concurrent guesses cannot overshoot); a success, and a
    refusal, hand the count back, so the per-IP limit counts failed verifications only."""
    request = RequestFactory().post("/", REMOTE_ADDR="198.51.100.7")
    ip = limits.subject_of("198.51.100.7")
    with django_capture_on_commit_callbacks(execute=True):
        challenge = issue_challenge(user=user, purpose="step_up")
    code = mail.outbox[0].body.split("\n    ")[1].split()[0]
    assert verify_challenge(challenge.pk, WRONG_CODE, request=request).reason == VerifyReason.INVALID_CODE
    after_failure = limits.peek(limits.VERIFY_FAILURES_PER_IP, ip)
    assert after_failure is not None
    assert after_failure.count == 1
    assert verify_challenge(challenge.pk, code, request=request).success
    after_success = limits.peek(limits.VERIFY_FAILURES_PER_IP, ip)
    assert after_success is not None
    assert after_success.count == 1


def test_giving_back_on_a_dead_cache_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="django_emailotp")
    with override_settings(CACHES=DEAD_CACHE):
        limits.give_back(limits.VERIFY_FAILURES_PER_IP, "198.51.100.7")
    [record] = [r for r in caplog.records if "giving back" in r.getMessage()]
    assert record.levelno == logging.ERROR
