"""The audit trail (one exact row per step, pseudonymised, client IP rules, append-only) and the public signals."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from datetime import timedelta
from functools import partial
from typing import Any

import pytest
import time_machine
from django.core.mail import EmailMessage
from django.dispatch import Signal
from django.test import override_settings

from django_emailotp import signals
from django_emailotp.crypto import email_pseudonym
from django_emailotp.models import AppendOnlyError, AuditEvent, Challenge, DeliveryStatus
from django_emailotp.services import VerifyReason, verify_challenge
from example_project.env import mail_settings
from tests.test_issue import T0, Capture, Issue, end_request, issue_and_read, session_request, wrong_code

IP = "203.0.113.7"
AGENT = "pytest-agent/1.0"
ROW_FIELDS = ("event", "outcome", "reason", "user_id", "purpose", "challenge_id", "email_pseudonym")


@pytest.fixture
def issue(db: None, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]) -> Issue:
    return partial(issue_and_read, django_capture_on_commit_callbacks, mailoutbox)


def rows(**filters: Any) -> list[tuple[Any, ...]]:
    return [
        tuple(getattr(event, name) for name in ROW_FIELDS)
        for event in AuditEvent.objects.filter(**filters).order_by("id")
    ]


def request_meta(**filters: Any) -> list[tuple[str | None, str, str]]:
    return [
        (event.ip_address, event.user_agent, event.session_hash)
        for event in AuditEvent.objects.filter(**filters).order_by("id")
    ]


@pytest.fixture
def refused_smtp() -> Iterator[None]:
    """Django's real SMTP backend pointed at a local port nothing listens on: ConnectionRefusedError, transient."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with override_settings(**mail_settings("django.core.mail.backends.smtp.EmailBackend", host="127.0.0.1", port=port)):
        yield


# ---------------------------------------------------------------------------------------------------------------
# One row per step


def test_issue_send_and_verify_success_rows(user: Any, issue: Issue) -> None:
    request = session_request(ip=IP, agent=AGENT)
    with time_machine.travel(T0, tick=False):
        challenge, code = issue(user=user, purpose="login", request=request)
        session_key = end_request(request)
        assert verify_challenge(challenge.pk, code, request=session_request(session_key, ip=IP, agent=AGENT))

    pseudonym = email_pseudonym("alice@example.com")
    assert len(pseudonym) == 24
    assert pseudonym != "alice@example.com"
    assert pseudonym == email_pseudonym(" Alice@Example.com ")  # the same person under any spelling
    assert rows() == [
        ("challenge_issued", "success", "", user.pk, "login", challenge.pk, pseudonym),
        ("challenge_sent", "success", "", user.pk, "login", challenge.pk, pseudonym),
        ("verify_succeeded", "success", "", user.pk, "login", challenge.pk, pseudonym),
    ]
    # Sending happens after the request (in-process after commit, or in a worker): it has no client to record.
    assert request_meta() == [(IP, AGENT, challenge.binding), (None, "", ""), (IP, AGENT, challenge.binding)]
    assert {event.created_at for event in AuditEvent.objects.all()} == {T0}
    assert not AuditEvent.objects.filter(email_pseudonym__contains="@").exists()


def test_every_failure_reason_writes_its_row(user: Any, issue: Issue) -> None:
    pseudonym = email_pseudonym("alice@example.com")
    meta = {"ip": IP, "agent": AGENT}
    with time_machine.travel(T0, tick=False) as clock:
        request = session_request(**meta)
        bound, bound_code = issue(user=user, purpose="step_up", request=request, action="Send 500 EUR to ACME")
        session_key = end_request(request)
        login, login_code = issue(user=user, purpose="login")
        first = AuditEvent.objects.order_by("-id").first()
        assert first is not None
        start = first.pk

        verify = partial(verify_challenge, request=session_request(session_key, **meta))
        assert verify(bound.pk, bound_code, purpose="login").reason == VerifyReason.WRONG_BINDING
        assert verify(bound.pk, bound_code, action="Send 9 EUR to EVIL").reason == VerifyReason.WRONG_BINDING
        assert verify(bound.pk, "12a456").reason == VerifyReason.MALFORMED
        unknown = uuid.uuid4()
        assert verify(unknown, "123456").reason == VerifyReason.NOT_FOUND
        assert verify(login.pk, wrong_code(login_code)).reason == VerifyReason.INVALID_CODE
        assert verify(login.pk, login_code)
        assert verify(login.pk, login_code).reason == VerifyReason.USED
        clock.move_to(T0 + timedelta(seconds=300))
        assert verify(bound.pk, bound_code).reason == VerifyReason.EXPIRED

    new_rows = rows(pk__gt=start)
    assert new_rows == [
        ("verify_failed", "failure", "wrong_binding", user.pk, "step_up", bound.pk, pseudonym),
        ("verify_failed", "failure", "wrong_binding", user.pk, "step_up", bound.pk, pseudonym),
        # Malformed input is refused before the row is read, so only the id the client sent is known.
        ("verify_failed", "failure", "malformed", None, "", bound.pk, ""),
        ("verify_failed", "failure", "not_found", None, "", unknown, ""),
        ("verify_failed", "failure", "invalid_code", user.pk, "login", login.pk, pseudonym),
        ("verify_succeeded", "success", "", user.pk, "login", login.pk, pseudonym),
        ("verify_failed", "failure", "used", user.pk, "login", login.pk, pseudonym),
        ("verify_failed", "failure", "expired", user.pk, "step_up", bound.pk, pseudonym),
    ]
    assert set(request_meta(pk__gt=start)) == {(IP, AGENT, bound.binding)}


def test_burn_and_superseded_rows(user: Any, issue: Issue) -> None:
    pseudonym = email_pseudonym("alice@example.com")
    with time_machine.travel(T0, tick=False) as clock:
        burned, code = issue(user=user, purpose="login")
        for _ in range(5):
            verify_challenge(burned.pk, wrong_code(code))
        assert verify_challenge(burned.pk, code).reason == VerifyReason.BURNED
        clock.move_to(T0 + timedelta(seconds=60))
        old, old_code = issue(user=user, purpose="step_up")
        clock.move_to(T0 + timedelta(seconds=120))
        new, _ = issue(user=user, purpose="step_up")
        assert verify_challenge(old.pk, old_code).reason == VerifyReason.SUPERSEDED

    assert rows(challenge_id=burned.pk, event__in=["verify_failed", "challenge_burned"]) == [
        *[("verify_failed", "failure", "invalid_code", user.pk, "login", burned.pk, pseudonym)] * 5,
        ("challenge_burned", "failure", "", user.pk, "login", burned.pk, pseudonym),
        ("verify_failed", "failure", "burned", user.pk, "login", burned.pk, pseudonym),
    ]
    assert rows(challenge_id=old.pk, event="verify_failed") == [
        ("verify_failed", "failure", "superseded", user.pk, "step_up", old.pk, pseudonym),
    ]
    assert AuditEvent.objects.get(event="challenge_issued", challenge_id=new.pk).data == {"superseded": str(old.pk)}


@pytest.mark.usefixtures("refused_smtp")
def test_a_failed_send_writes_its_row(user: Any, django_capture_on_commit_callbacks: Capture) -> None:
    from django_emailotp.exceptions import DeliveryUnavailable
    from django_emailotp.models import Challenge
    from django_emailotp.services import issue_challenge

    # In-process delivery tells the caller, so the page can say the code was not sent.
    with (
        pytest.raises(DeliveryUnavailable, match="could not be sent"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        issue_challenge(user=user, purpose="login")
    challenge = Challenge.objects.get(user=user)
    assert challenge.delivery_status == DeliveryStatus.FAILED
    failed = AuditEvent.objects.get(event="delivery_failed")
    assert (failed.outcome, failed.reason, failed.challenge_id, failed.user) == (
        "failure",
        "transient",
        challenge.pk,
        user,
    )
    assert failed.data["error"].startswith("ConnectionRefusedError")

    # No code reached the inbox, so the resend cooldown does not stand in the way of another try.
    with pytest.raises(DeliveryUnavailable), django_capture_on_commit_callbacks(execute=True):
        issue_challenge(user=user, purpose="login")
    assert Challenge.objects.filter(user=user).count() == 2
    challenge.refresh_from_db()
    assert challenge.status == "superseded"


# ---------------------------------------------------------------------------------------------------------------
# Client IP


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (0, "", "10.0.0.1"),
        (0, "198.51.100.9", "10.0.0.1"),  # no trusted proxy: the header is ignored
        (1, "1.1.1.1, 198.51.100.9", "198.51.100.9"),  # the right-most entry, never the left-most
        (1, "198.51.100.9", "198.51.100.9"),
        (2, "1.1.1.1, 198.51.100.9, 10.0.0.2", "198.51.100.9"),
        (1, "", "10.0.0.1"),  # fewer entries than proxies: REMOTE_ADDR
        (2, "198.51.100.9", "10.0.0.1"),
        (1, "1.1.1.1, not-an-ip", "10.0.0.1"),  # garbage from a broken proxy: REMOTE_ADDR
        (1, "2001:db8::1", "2001:db8::1"),
    ],
)
def test_client_ip(user: Any, issue: Issue, proxies: int, forwarded: str, expected: str) -> None:
    request = session_request(ip="10.0.0.1", HTTP_X_FORWARDED_FOR=forwarded)
    with override_settings(EMAIL_OTP_TRUSTED_PROXY_COUNT=proxies):
        challenge, _code = issue(user=user, purpose="login", request=request)
    assert AuditEvent.objects.get(event="challenge_issued").ip_address == expected
    assert challenge.ip_address == expected


def test_user_agent_is_truncated(user: Any, issue: Issue) -> None:
    issue(user=user, purpose="login", request=session_request(agent="A" * 2000))
    assert AuditEvent.objects.get(event="challenge_issued").user_agent == "A" * 512


# ---------------------------------------------------------------------------------------------------------------
# Append-only


def test_audit_rows_cannot_be_changed_or_deleted(user: Any, issue: Issue) -> None:
    issue(user=user, purpose="login")
    event = AuditEvent.objects.get(event="challenge_issued")
    before = list(AuditEvent.objects.order_by("id").values())

    event.reason = "tampered"
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.save(update_fields=["reason"])
    with pytest.raises(AppendOnlyError):
        event.delete()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).update(reason="tampered")
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.update(reason="tampered")
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).delete()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.all().delete()

    assert list(AuditEvent.objects.order_by("id").values()) == before


def test_deleting_a_user_keeps_their_audit_rows(user: Any, issue: Issue) -> None:
    challenge, _code = issue(user=user, purpose="login")
    user.delete()
    assert not Challenge.objects.exists()
    assert rows() == [
        ("challenge_issued", "success", "", None, "login", challenge.pk, email_pseudonym("alice@example.com")),
        ("challenge_sent", "success", "", None, "login", challenge.pk, email_pseudonym("alice@example.com")),
    ]


# ---------------------------------------------------------------------------------------------------------------
# Signals


@pytest.fixture
def received() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Every emailotp signal sent during the test, with its sender checked and its keyword arguments."""
    names = [name for name, value in vars(signals).items() if isinstance(value, Signal)]
    log: list[tuple[str, dict[str, Any]]] = []
    receivers = {}
    for name in names:

        def receiver(sender: Any, signal: Signal, _name: str = name, **kwargs: Any) -> None:
            assert sender is Challenge
            log.append((_name, kwargs))

        receivers[name] = receiver
        getattr(signals, name).connect(receiver)
    yield log
    for name, receiver in receivers.items():
        getattr(signals, name).disconnect(receiver)


def test_signals_for_issue_send_and_success(user: Any, issue: Issue, received: list[Any]) -> None:
    request = session_request()
    challenge, code = issue(user=user, purpose="login", request=request)
    other = session_request(end_request(request))
    verify_challenge(challenge.pk, code, request=other)

    # Whether the send runs before issue_challenge() returns depends on the caller's transaction: order-free.
    signalled = dict(received)
    assert len(received) == len(signalled) == 3
    assert {name: sorted(kwargs) for name, kwargs in received} == {
        "challenge_issued": ["challenge", "request"],
        "challenge_sent": ["challenge", "message_id"],
        "challenge_verified": ["challenge", "request"],
    }
    assert received[-1][0] == "challenge_verified"
    sent, issued, verified = (signalled[name] for name in ("challenge_sent", "challenge_issued", "challenge_verified"))
    assert (sent["challenge"].pk, sent["message_id"]) == (challenge.pk, "")
    assert (issued["challenge"].pk, issued["request"]) == (challenge.pk, request)
    assert (verified["challenge"].pk, verified["challenge"].status, verified["request"]) == (
        challenge.pk,
        "verified",
        other,
    )


def test_signals_for_failures_and_burn(user: Any, issue: Issue, received: list[Any]) -> None:
    challenge, code = issue(user=user, purpose="login")
    received.clear()
    unknown = uuid.uuid4()
    verify_challenge(unknown, code)
    verify_challenge(challenge.pk, "12a456")
    for _ in range(5):
        verify_challenge(challenge.pk, wrong_code(code))

    assert [(name, kwargs.get("reason")) for name, kwargs in received] == [
        ("challenge_failed", VerifyReason.NOT_FOUND),
        ("challenge_failed", VerifyReason.MALFORMED),
        *[("challenge_failed", VerifyReason.INVALID_CODE)] * 5,
        ("challenge_burned", None),
    ]
    assert all(sorted(kwargs) == ["challenge", "reason", "request"] for name, kwargs in received[:-1])
    assert received[0][1]["challenge"] is None
    assert received[1][1]["challenge"] is None  # malformed: the row is never read
    assert {kwargs["challenge"].pk for _name, kwargs in received[2:]} == {challenge.pk}
    assert sorted(received[-1][1]) == ["challenge", "request"]
    assert received[-1][1]["challenge"].status == "burned"


@pytest.mark.usefixtures("refused_smtp")
def test_signal_for_a_failed_send(user: Any, django_capture_on_commit_callbacks: Capture, received: list[Any]) -> None:
    from django_emailotp.exceptions import DeliveryUnavailable
    from django_emailotp.models import Challenge
    from django_emailotp.services import issue_challenge

    with pytest.raises(DeliveryUnavailable), django_capture_on_commit_callbacks(execute=True):
        issue_challenge(user=user, purpose="login")
    challenge = Challenge.objects.get(user=user)
    assert len(received) == 2
    assert {name: sorted(kwargs) for name, kwargs in received} == {
        "challenge_issued": ["challenge", "request"],
        "challenge_delivery_failed": ["challenge", "error", "final", "transient"],
    }
    failed = dict(received)["challenge_delivery_failed"]
    assert (failed["challenge"].pk, failed["error"], failed["transient"], failed["final"]) == (
        challenge.pk,
        "ConnectionRefusedError",
        True,
        True,
    )
