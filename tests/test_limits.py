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

from django_emailotp import limits, services
from django_emailotp.exceptions import SendLimitReached
from django_emailotp.models import AuditEvent, AuditEventType, Challenge
from django_emailotp.services import VerifyReason, issue_challenge, verify_challenge
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SEND_URL = "/otp/send/"
SIGN_IN_URL = "/otp/sign-in/"
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


def sign_in_html(client: Client, ip: str = "192.0.2.10", email: str = "alice@example.com", **extra: Any) -> Any:
    response = client.post(SIGN_IN_URL, {"email": email}, REMOTE_ADDR=ip, **extra)
    services.wait_for_background_sends()
    return response


def sign_in_api(client: Client, ip: str = "192.0.2.10", email: str = "alice@example.com", **extra: Any) -> Any:
    body = {"purpose": "sign_in", "email": email}
    response = client.post(API_CREATE, body, content_type="application/json", REMOTE_ADDR=ip, **extra)
    services.wait_for_background_sends()
    return response


@pytest.mark.django_db(transaction=True)
@override_settings(EMAIL_OTP_RATES={"send_per_ip": "3/h"}, EMAIL_OTP_SIGN_IN_ENABLED=True)
def test_per_ip_send_limit_answers_429_with_retry_after_on_the_page_and_the_api(user: Any, clock: Any) -> None:
    # Anonymous sends (sign-in) count per client IP; the answer tells nothing about the address.
    for address in ("alice@example.com", "nobody@example.com", "alice@example.com"):
        assert sign_in_html(Client(), email=address).status_code == 302
    refused = sign_in_html(Client(), email="someone@example.com")
    assert refused.status_code == 429
    retry_after = int(refused["Retry-After"])
    assert 1 <= retry_after <= 3600
    minutes = -(-retry_after // 60)
    assert f"Too many requests. Please try again in {minutes} minutes." in refused.content.decode()
    assert (Challenge.objects.count(), len(mail.outbox)) == (3, 2)
    [event] = limited()
    assert (event.reason, event.outcome, event.user_id, event.purpose, str(event.ip_address)) == (
        "send_per_ip",
        "failure",
        None,
        "sign_in",
        "192.0.2.10",
    )
    assert event.data == {"retry_after": retry_after}

    # The API shares the per-IP count, and a refused request is not counted against anything else.
    api = sign_in_api(Client())
    assert api.status_code == 429
    assert api["Retry-After"] == str(retry_after)
    assert api.json() == {
        "error": "rate_limited",
        "message": f"Too many requests. Please try again in {minutes} minutes.",
        "retry_after": retry_after,
    }
    assert (Challenge.objects.count(), len(mail.outbox)) == (3, 2)
    # A fresh address is counted apart; Retry-After later, the first address gets in again (not a second before).
    assert sign_in_api(Client(), ip="192.0.2.11").status_code == 202
    clock.shift(timedelta(seconds=retry_after - 1))
    assert sign_in_api(Client()).status_code == 429
    clock.shift(timedelta(seconds=1))
    assert sign_in_api(Client()).status_code == 202
    assert (Challenge.objects.count(), len(mail.outbox)) == (5, 4)

    # The owner's own codes are not counted per IP: a step-up from the limited address still goes out.
    for _ in range(3):
        sign_in_api(Client(), email="nobody@example.com")
    owner = Client()
    owner.force_login(user)
    step_up = owner.post(API_CREATE, {"purpose": "step_up"}, content_type="application/json", REMOTE_ADDR="192.0.2.10")
    assert step_up.status_code == 202
    assert mail.outbox[-1].to == ["alice@example.com"]
    assert len(mail.outbox) == 5


def test_own_limit_is_told_on_the_page_and_in_the_api_and_a_refusal_counts_nothing(
    user: Any, alice: Client, django_capture_on_commit_callbacks: Any, clock: Any
) -> None:
    accepted = [send_html(alice, django_capture_on_commit_callbacks) for _ in range(5)]
    refused = send_html(alice, django_capture_on_commit_callbacks)

    assert [r.status_code for r in accepted] == [302] * 5
    assert refused.status_code == 429
    retry_after = int(refused["Retry-After"])
    assert 1 <= retry_after <= 3600
    again_at = (START + timedelta(seconds=retry_after)).strftime("%H:%M")
    minutes = -(-retry_after // 60)
    assert (
        f"You have asked for several codes in a short time. You can ask for another one at {again_at} UTC, "
        f"in {minutes} minutes."
    ) in refused.content.decode()
    assert (Challenge.objects.count(), len(mail.outbox)) == (5, 5)
    [event] = limited()
    assert (event.reason, event.user_id, event.purpose) == ("send_per_user", user.pk, "step_up")
    assert event.data == {"retry_after": retry_after, "answered_as": "refused"}

    api = send_api(alice, django_capture_on_commit_callbacks)
    assert (api.status_code, api["Retry-After"]) == (429, str(retry_after))
    assert api.json() == {
        "error": "send_limit_reached",
        "message": (
            f"You have asked for several codes in a short time. You can ask for another one at {again_at} UTC, "
            f"in {minutes} minutes."
        ),
        "retry_after": retry_after,
    }
    assert (Challenge.objects.count(), len(mail.outbox), len(limited("send_per_user"))) == (5, 5, 2)
    # The refusals were not counted against the daily limit either.
    daily = limits.peek(limits.SEND_PER_USER_DAILY, own_subject(user))
    assert daily is not None
    assert daily.count == 5

    clock.shift(timedelta(seconds=retry_after))
    assert send_api(alice, django_capture_on_commit_callbacks).status_code == 202
    assert (Challenge.objects.count(), len(mail.outbox)) == (6, 6)


def own_subject(user: Any, path: str = "step_up") -> str:
    return f"{path}|{user.pk}|{user.email}"


def test_daily_per_user_limit_holds_across_hourly_windows(
    user: Any, alice: Client, django_capture_on_commit_callbacks: Any, clock: Any
) -> None:
    # Daily windows start at a per-key offset: begin at the start of this user's, so four hours fit in it.
    daily = limits.peek(limits.SEND_PER_USER_DAILY, own_subject(user))
    assert daily is not None
    clock.shift(timedelta(seconds=daily.retry_after))
    for _hour in range(4):
        for _ in range(5):
            assert send_api(alice, django_capture_on_commit_callbacks).status_code == 202
        clock.shift(timedelta(hours=1, seconds=1))
    assert len(mail.outbox) == 20
    assert limited() == []

    refused = send_api(alice, django_capture_on_commit_callbacks)
    assert (refused.status_code, refused.json()["error"]) == (429, "send_limit_reached")
    assert len(mail.outbox) == 20
    assert [e.reason for e in limited()] == ["send_per_user_daily"]

    clock.shift(timedelta(days=1) - timedelta(hours=4, seconds=4))
    assert send_api(alice, django_capture_on_commit_callbacks).status_code == 202
    assert len(mail.outbox) == 21


@override_settings(EMAIL_OTP_RATES={"send_per_address": "2/h"})
def test_per_address_ceiling_counts_anonymous_requests_from_every_ip_and_never_an_owners_own_codes(
    user: Any, django_capture_on_commit_callbacks: Any, clock: Any
) -> None:
    def sign_in_from(ip: str) -> Challenge:
        with django_capture_on_commit_callbacks(execute=True):
            return issue_challenge(
                email="Alice@Example.com", purpose="sign_in", request=RequestFactory().post("/", REMOTE_ADDR=ip)
            )

    sign_in_from("198.51.100.1")
    sign_in_from("198.51.100.2")
    quiet = sign_in_from("198.51.100.3")
    assert Challenge.objects.get(pk=quiet.pk).send_email is False
    assert len(mail.outbox) == 2
    [event] = limited()
    assert (event.reason, event.user_id, event.data["answered_as"]) == ("send_per_address", None, "accepted")
    assert event.email_pseudonym
    assert "alice" not in event.email_pseudonym.lower()

    # Two accounts sharing the address each keep their own budget, which the anonymous requests never touched.
    twin = UserFactory(username="alice2", email="Alice@Example.com")
    for owner in (user, twin):
        with django_capture_on_commit_callbacks(execute=True):
            assert issue_challenge(user=owner, purpose="step_up").send_email is True
    assert len(mail.outbox) == 4


@override_settings(EMAIL_OTP_RATES={"send_per_user": "2/h", "send_per_user_daily": None})
def test_rates_setting_overrides_a_limit_and_none_switches_one_off(
    user: Any, django_capture_on_commit_callbacks: Any, clock: Any
) -> None:
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            issue_challenge(user=user, purpose="step_up")
    with pytest.raises(SendLimitReached) as refused:
        issue_challenge(user=user, purpose="step_up")
    assert (refused.value.limit, 1 <= refused.value.retry_after <= 3600) == ("send_per_user", True)
    assert (len(mail.outbox), [e.reason for e in limited()]) == (2, ["send_per_user"])

    with override_settings(EMAIL_OTP_RATES={"send_per_user": None}):
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

    with django_capture_on_commit_callbacks(execute=True):
        issue_challenge(
            email="alice@example.com", purpose="sign_in", request=RequestFactory().post("/", REMOTE_ADDR="203.0.113.77")
        )

    contents = cache_contents()
    # Two own-code counters, the failed-verification one and the five of an anonymous send.
    assert contents.count("rl:") >= 8
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


@pytest.mark.django_db(transaction=True)
@override_settings(
    EMAIL_OTP_TRUSTED_PROXY_COUNT=1, EMAIL_OTP_RATES={"send_per_ip": "2/h"}, EMAIL_OTP_SIGN_IN_ENABLED=True
)
def test_behind_one_proxy_the_limit_follows_the_right_most_forwarded_entry(user: Any, clock: Any) -> None:
    proxy = "10.0.0.1"
    for spoofed in ("1.1.1.1", "2.2.2.2"):
        forwarded = f"{spoofed}, 203.0.113.7"
        assert sign_in_api(Client(), ip=proxy, HTTP_X_FORWARDED_FOR=forwarded).status_code == 202
    # A new spoofed left-most entry does not make a new client.
    evading = sign_in_api(Client(), ip=proxy, HTTP_X_FORWARDED_FOR="3.3.3.3, 203.0.113.7")
    assert evading.status_code == 429
    assert [str(e.ip_address) for e in limited("send_per_ip")] == ["203.0.113.7"]
    assert {str(c.ip_address) for c in Challenge.objects.all()} == {"203.0.113.7"}

    # Someone naming the limited address on the left is judged by their own address.
    framing = sign_in_api(Client(), ip=proxy, HTTP_X_FORWARDED_FOR="203.0.113.7, 198.51.100.9")
    assert framing.status_code == 202
    assert Challenge.objects.get(pk=framing.json()["id"]).ip_address == "198.51.100.9"


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


@override_settings(EMAIL_OTP_RATES={"send_per_ip_and_address": "1/h"})
def test_a_send_refused_by_one_limit_counts_against_none_of_the_others(
    user: Any, django_capture_on_commit_callbacks: Any, clock: Any
) -> None:
    # Issue 10: the per-address counter used to be counted even for a request past the requester's own limit, so
    # one requester's refused requests spent everybody's ceiling.
    request = RequestFactory().post("/", REMOTE_ADDR="198.51.100.20")
    for _ in range(4):
        with django_capture_on_commit_callbacks(execute=True):
            issue_challenge(email="alice@example.com", purpose="sign_in", request=request)
    assert len(mail.outbox) == 1
    assert [e.reason for e in limited()] == ["send_per_ip_and_address"] * 3
    ip, address = limits.subject_of("198.51.100.20"), limits.subject_of("alice@example.com")
    counts = {
        name: usage.count
        for name, subject in (
            (limits.SEND_PER_IP, ip),
            (limits.SEND_PER_IP_AND_ADDRESS, f"{ip}|{address}"),
            (limits.SEND_PER_IP_AND_ADDRESS_DAILY, f"{ip}|{address}"),
            (limits.SEND_PER_ADDRESS, address),
            (limits.SEND_PER_ADDRESS_DAILY, address),
        )
        if (usage := limits.peek(name, subject)) is not None
    }
    assert counts == dict.fromkeys(
        (
            limits.SEND_PER_IP,
            limits.SEND_PER_IP_AND_ADDRESS,
            limits.SEND_PER_IP_AND_ADDRESS_DAILY,
            limits.SEND_PER_ADDRESS,
            limits.SEND_PER_ADDRESS_DAILY,
        ),
        1,
    )
