"""Per-IP limits group addresses (SECURITY.md rule 21, issue 10 finding 6): IPv6 by EMAIL_OTP_IPV6_PREFIX_LENGTH
(a /64 by default), IPv4-mapped IPv6 as the IPv4 address. The audit trail keeps each exact address."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from django.core import mail
from django.test import Client
from rest_framework.authtoken.models import Token

from django_emailotp import services
from django_emailotp.models import AuditEvent, AuditEventType, Challenge
from tests.factories import UserFactory

# Sign-in codes are delivered on a thread of their own, which sees only committed rows.
pytestmark = pytest.mark.django_db(transaction=True)

CHALLENGES = "/api/otp/challenges/"
# 25 addresses inside 2001:db8:5:7::/64, every one a different host.
SAME_64 = [f"2001:db8:5:7:{n:x}:{n * 7:x}:1:{n + 1:x}" for n in range(25)]


@pytest.fixture(autouse=True)
def _defaults(settings: Any) -> None:
    settings.EMAIL_OTP_RESEND_COOLDOWN = 0
    settings.EMAIL_OTP_SIGN_IN_ENABLED = True
    settings.ROOT_URLCONF = "tests.api_urls"


def send_from(ip: str, capture: Any) -> Any:
    """An anonymous sign-in code for a new account's address (so no per-address limit is near) from ``ip``.

    Anonymous sends are what the per-IP limit counts; a signed-in owner's own codes have a budget of their own."""
    user = UserFactory()
    with capture(execute=True):
        response = Client().post(
            CHALLENGES, {"purpose": "sign_in", "email": user.email}, content_type="application/json", REMOTE_ADDR=ip
        )
    services.wait_for_background_sends()
    return response


def refused_sends() -> list[tuple[str, str]]:
    rows = AuditEvent.objects.filter(event=AuditEventType.RATE_LIMITED).order_by("id")
    return [(row.reason, str(row.ip_address)) for row in rows]


def test_25_addresses_of_one_64_share_the_20_per_hour_limit(django_capture_on_commit_callbacks: Any) -> None:
    statuses = [send_from(ip, django_capture_on_commit_callbacks).status_code for ip in SAME_64]
    assert statuses == [202] * 20 + [429] * 5
    assert (Challenge.objects.count(), len(mail.outbox)) == (20, 20)
    # Each refusal is audited with the exact address that sent it, not the group.
    assert refused_sends() == [("send_per_ip", ip) for ip in SAME_64[20:]]
    assert [str(ip) for ip in Challenge.objects.order_by("created_at").values_list("ip_address", flat=True)] == [
        str(ipaddress.ip_address(ip)) for ip in SAME_64[:20]
    ]


def test_a_different_64_is_counted_apart(django_capture_on_commit_callbacks: Any) -> None:
    for ip in SAME_64[:20]:
        assert send_from(ip, django_capture_on_commit_callbacks).status_code == 202
    assert send_from("2001:db8:5:7::ffff", django_capture_on_commit_callbacks).status_code == 429
    assert send_from("2001:db8:5:8::1", django_capture_on_commit_callbacks).status_code == 202
    assert send_from("2001:db8:5:6:ffff:ffff:ffff:ffff", django_capture_on_commit_callbacks).status_code == 202


def test_the_mapped_form_counts_with_the_plain_ipv4_address(django_capture_on_commit_callbacks: Any) -> None:
    for n in range(20):
        ip = "203.0.113.9" if n % 2 else "::ffff:203.0.113.9"
        assert send_from(ip, django_capture_on_commit_callbacks).status_code == 202
    assert send_from("203.0.113.9", django_capture_on_commit_callbacks).status_code == 429
    assert send_from("::ffff:203.0.113.9", django_capture_on_commit_callbacks).status_code == 429
    assert send_from("::ffff:cb00:710a", django_capture_on_commit_callbacks).status_code == 202  # 203.0.113.10
    # IPv4 is never grouped: the next address is its own.
    assert send_from("203.0.113.8", django_capture_on_commit_callbacks).status_code == 202
    assert refused_sends() == [("send_per_ip", "203.0.113.9"), ("send_per_ip", "::ffff:203.0.113.9")]


def test_the_prefix_is_configurable(settings: Any, django_capture_on_commit_callbacks: Any) -> None:
    settings.EMAIL_OTP_RATES = {"send_per_ip": "2/h"}
    settings.EMAIL_OTP_IPV6_PREFIX_LENGTH = 48
    assert send_from("2001:db8:5:1::1", django_capture_on_commit_callbacks).status_code == 202
    assert send_from("2001:db8:5:2::1", django_capture_on_commit_callbacks).status_code == 202
    assert send_from("2001:db8:5:ffff::1", django_capture_on_commit_callbacks).status_code == 429  # same /48
    assert send_from("2001:db8:6::1", django_capture_on_commit_callbacks).status_code == 202
    settings.EMAIL_OTP_IPV6_PREFIX_LENGTH = 128  # every address its own
    assert send_from("2001:db8:7::1", django_capture_on_commit_callbacks).status_code == 202
    assert send_from("2001:db8:7::2", django_capture_on_commit_callbacks).status_code == 202
    assert send_from("2001:db8:7::3", django_capture_on_commit_callbacks).status_code == 202


def test_failed_verifications_per_ip_group_the_same_way(
    settings: Any, user: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.EMAIL_OTP_RATES = {"verify_failures_per_ip": "3/h"}
    token = Token.objects.create(user=user)
    headers = {"Authorization": f"Token {token.key}"}
    with django_capture_on_commit_callbacks(execute=True):
        created = Client().post(CHALLENGES, {"purpose": "step_up"}, content_type="application/json", headers=headers)
    verify = f"{CHALLENGES}{created.json()['id']}/verify/"
    answers = [
        Client().post(verify, {"code": "000000"}, content_type="application/json", headers=headers, REMOTE_ADDR=ip)
        for ip in ("2001:db8:9:1::1", "2001:db8:9:1::2", "2001:db8:9:1:ffff::3", "2001:db8:9:1::4")
    ]
    assert [answer.status_code for answer in answers] == [400, 400, 400, 429]
    assert answers[-1].json()["error"] == "rate_limited"
    assert refused_sends() == [("verify_failures_per_ip", "2001:db8:9:1::4")]
    other = Client().post(
        verify, {"code": "000000"}, content_type="application/json", headers=headers, REMOTE_ADDR="2001:db8:9:2::1"
    )
    assert other.status_code == 400
