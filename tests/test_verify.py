"""Verifying codes: expiry at the boundary, single use, attempt cap, binding, input normalisation, key rotation."""

from __future__ import annotations

import uuid
from datetime import timedelta
from functools import partial
from typing import Any

import pytest
import time_machine
from django.core.mail import EmailMessage
from django.test import override_settings

from django_emailotp.crypto import code_hash
from django_emailotp.models import AuditEvent, Challenge, ChallengeStatus
from django_emailotp.services import VerifyReason, verify_challenge
from tests.test_issue import T0, Capture, Issue, end_request, issue_and_read, session_request, wrong_code

K1 = "k1-" + "a" * 60
K2 = "k2-" + "b" * 60


@pytest.fixture
def issue(db: None, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]) -> Issue:
    return partial(issue_and_read, django_capture_on_commit_callbacks, mailoutbox)


def state(challenge: Challenge) -> tuple[str, int, str]:
    challenge.refresh_from_db()
    return challenge.status, challenge.attempts, challenge.code_hash


def failures(reason: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(event="verify_failed", reason=reason).order_by("id"))


# ---------------------------------------------------------------------------------------------------------------
# Expiry


def test_valid_one_microsecond_before_expiry(user: Any, issue: Issue) -> None:
    with time_machine.travel(T0, tick=False) as clock:
        challenge, code = issue(user=user, purpose="login")
        assert challenge.expires_at == T0 + timedelta(seconds=300)
        clock.move_to(challenge.expires_at - timedelta(microseconds=1))
        result = verify_challenge(challenge.pk, code)
    assert (result.success, result.reason) == (True, None)
    assert state(challenge) == (ChallengeStatus.VERIFIED, 0, "")


def test_expired_exactly_at_expires_at(user: Any, issue: Issue) -> None:
    with time_machine.travel(T0, tick=False) as clock:
        challenge, code = issue(user=user, purpose="login")
        assert challenge.code_hash == code_hash(challenge.pk, code)
        clock.move_to(challenge.expires_at)
        result = verify_challenge(challenge.pk, code)
        assert (result.success, result.reason, result.attempts_remaining) == (False, VerifyReason.EXPIRED, 0)
        assert state(challenge) == (ChallengeStatus.EXPIRED, 0, "")
        # Later submissions keep answering "expired" and cost nothing.
        assert verify_challenge(challenge.pk, wrong_code(code)).reason == VerifyReason.EXPIRED
    assert state(challenge) == (ChallengeStatus.EXPIRED, 0, "")
    assert [event.challenge_id for event in failures("expired")] == [challenge.pk, challenge.pk]


# ---------------------------------------------------------------------------------------------------------------
# Single use


def test_a_code_works_once(user: Any, issue: Issue) -> None:
    with time_machine.travel(T0, tick=False) as clock:
        challenge, code = issue(user=user, purpose="login")
        clock.move_to(T0 + timedelta(seconds=42))
        first = verify_challenge(challenge.pk, code)
        clock.move_to(T0 + timedelta(seconds=43))
        second = verify_challenge(challenge.pk, code)
    assert (first.success, first.reason, first.challenge.pk) == (True, None, challenge.pk)  # type: ignore[union-attr]
    assert (second.success, second.reason, second.attempts_remaining) == (False, VerifyReason.USED, 0)
    challenge.refresh_from_db()
    assert (challenge.status, challenge.consumed_at, challenge.code_hash, challenge.attempts) == (
        ChallengeStatus.VERIFIED,
        T0 + timedelta(seconds=42),
        "",
        0,
    )
    assert AuditEvent.objects.filter(event="verify_succeeded").count() == 1
    assert len(failures("used")) == 1


def test_unknown_challenge_ids(db: None) -> None:
    for challenge_id in (uuid.uuid4(), str(uuid.uuid4()), "not-a-uuid", None, 12):
        result = verify_challenge(challenge_id, "123456")  # type: ignore[arg-type]
        assert (result.success, result.reason, result.challenge) == (False, VerifyReason.NOT_FOUND, None)
    assert len(failures("not_found")) == 5


# ---------------------------------------------------------------------------------------------------------------
# Attempt cap


def test_wrong_guesses_count_down_then_burn(user: Any, issue: Issue) -> None:
    challenge, code = issue(user=user, purpose="login")
    guess = wrong_code(code)
    remaining = []
    for expected_attempts in range(1, 6):
        result = verify_challenge(challenge.pk, guess)
        assert (result.success, result.reason) == (False, VerifyReason.INVALID_CODE)
        remaining.append(result.attempts_remaining)
        status, attempts, stored = state(challenge)
        assert attempts == expected_attempts
        if expected_attempts < 5:
            assert (status, stored) == (ChallengeStatus.PENDING, code_hash(challenge.pk, code))
            assert not AuditEvent.objects.filter(event="challenge_burned").exists()
    assert remaining == [4, 3, 2, 1, 0]
    assert state(challenge) == (ChallengeStatus.BURNED, 5, "")
    burned = AuditEvent.objects.get(event="challenge_burned")
    assert (burned.outcome, burned.challenge_id, burned.user, burned.purpose) == (
        "failure",
        challenge.pk,
        user,
        "login",
    )

    right = verify_challenge(challenge.pk, code)
    assert (right.success, right.reason, right.attempts_remaining) == (False, VerifyReason.BURNED, 0)
    assert state(challenge) == (ChallengeStatus.BURNED, 5, "")
    assert AuditEvent.objects.filter(event="challenge_burned").count() == 1


@override_settings(EMAIL_OTP_MAX_ATTEMPTS=2)
def test_the_attempt_limit_is_a_setting_fixed_at_issue(user: Any, issue: Issue) -> None:
    challenge, code = issue(user=user, purpose="login")
    assert challenge.max_attempts == 2
    with override_settings(EMAIL_OTP_MAX_ATTEMPTS=5):
        assert verify_challenge(challenge.pk, wrong_code(code)).attempts_remaining == 1
        assert verify_challenge(challenge.pk, wrong_code(code)).attempts_remaining == 0
    assert state(challenge) == (ChallengeStatus.BURNED, 2, "")


# ---------------------------------------------------------------------------------------------------------------
# Binding


def test_purpose_binding(user: Any, issue: Issue) -> None:
    challenge, code = issue(user=user, purpose="login")
    refused = verify_challenge(challenge.pk, code, purpose="step_up")
    assert (refused.success, refused.reason, refused.attempts_remaining) == (False, VerifyReason.WRONG_BINDING, 5)
    assert state(challenge) == (ChallengeStatus.PENDING, 0, code_hash(challenge.pk, code))
    assert verify_challenge(challenge.pk, code, purpose="login").success


def test_action_binding(user: Any, issue: Issue) -> None:
    challenge, code = issue(user=user, purpose="step_up", action="Send 500 EUR to ACME")
    for other in ("Send 5000 EUR to ACME", "Send 500 EUR to EVIL", ""):
        refused = verify_challenge(challenge.pk, code, action=other)
        assert (refused.success, refused.reason, refused.attempts_remaining) == (False, VerifyReason.WRONG_BINDING, 5)
    assert state(challenge) == (ChallengeStatus.PENDING, 0, code_hash(challenge.pk, code))
    assert len(failures("wrong_binding")) == 3
    assert verify_challenge(challenge.pk, code, purpose="step_up", action="Send 500 EUR to ACME").success


def test_session_binding(user: Any, issue: Issue) -> None:
    request_a = session_request()
    challenge, code = issue(user=user, purpose="step_up", request=request_a)
    session_a = end_request(request_a)
    other = session_request()
    other.session["cart"] = "3 items"
    session_b = end_request(other)
    assert session_a != session_b
    assert challenge.binding

    in_b = verify_challenge(challenge.pk, code, request=session_request(session_b))
    assert (in_b.success, in_b.reason, in_b.attempts_remaining) == (False, VerifyReason.WRONG_BINDING, 5)
    # No request at all (a bound code cannot be used outside its session) and a cookie-less request.
    assert verify_challenge(challenge.pk, code).reason == VerifyReason.WRONG_BINDING
    assert verify_challenge(challenge.pk, code, request=session_request()).reason == VerifyReason.WRONG_BINDING
    assert state(challenge) == (ChallengeStatus.PENDING, 0, code_hash(challenge.pk, code))

    in_a = verify_challenge(challenge.pk, code, request=session_request(session_a))
    assert (in_a.success, in_a.reason) == (True, None)
    assert state(challenge)[0] == ChallengeStatus.VERIFIED


def test_flushing_the_session_ends_the_binding(user: Any, issue: Issue) -> None:
    request = session_request()
    challenge, code = issue(user=user, purpose="step_up", request=request)
    session_key = end_request(request)
    later = session_request(session_key)
    later.session.flush()  # what logout() does
    assert verify_challenge(challenge.pk, code, request=later).reason == VerifyReason.WRONG_BINDING


def test_an_unbound_challenge_verifies_with_any_request(user: Any, issue: Issue) -> None:
    challenge, code = issue(user=user, purpose="login")
    assert challenge.binding == ""
    assert verify_challenge(challenge.pk, code, request=session_request()).success


# ---------------------------------------------------------------------------------------------------------------
# Input normalisation

ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
FULLWIDTH = str.maketrans("0123456789", "".join(chr(0xFF10 + digit) for digit in range(10)))
SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


@pytest.mark.parametrize(
    "spell",
    [
        lambda code: f"{code[:3]} {code[3:]}",
        lambda code: f"{code[:3]}-{code[3:]}",
        lambda code: f" {code} ",
        lambda code: " - ".join(code),
    ],
    ids=["space", "hyphen", "padded", "spaced-and-hyphenated"],
)
def test_spaces_and_hyphens_are_stripped(user: Any, issue: Issue, spell: Any) -> None:
    challenge, code = issue(user=user, purpose="login")
    result = verify_challenge(challenge.pk, spell(code))
    assert (result.success, result.reason) == (True, None)


@pytest.mark.parametrize(
    "spell",
    [
        lambda code: code.translate(ARABIC_INDIC),
        lambda code: code.translate(FULLWIDTH),
        lambda code: code.translate(SUPERSCRIPT),
        lambda code: code[:-1],
        lambda code: code + "7",
        lambda code: code[:2] + "a" + code[3:],
        lambda code: code[:3] + "\t" + code[3:],
        lambda code: code[:3] + "." + code[3:],
        lambda code: code[:3] + "\u00a0" + code[3:],
        lambda code: "",
        lambda code: None,
        lambda code: int(code),
        lambda code: code.encode(),
        lambda code: [code],
        lambda code: code + " " * 10_240,
        lambda code: "1" * 10_240,
    ],
    ids=[
        "arabic-indic",
        "fullwidth",
        "superscript",
        "too-short",
        "too-long",
        "letter",
        "tab",
        "dot",
        "nbsp",
        "empty",
        "none",
        "int",
        "bytes",
        "list",
        "code-then-10kB",
        "10kB",
    ],
)
def test_malformed_input_costs_no_attempt(user: Any, issue: Issue, spell: Any) -> None:
    challenge, code = issue(user=user, purpose="login")
    result = verify_challenge(challenge.pk, spell(code))
    assert (result.success, result.reason, result.attempts_remaining) == (False, VerifyReason.MALFORMED, 0)
    assert state(challenge) == (ChallengeStatus.PENDING, 0, code_hash(challenge.pk, code))
    [event] = failures("malformed")
    assert (event.outcome, event.challenge_id) == ("failure", challenge.pk)
    assert verify_challenge(challenge.pk, code).success


def test_the_literal_examples_are_malformed(user: Any, issue: Issue) -> None:
    challenge, code = issue(user=user, purpose="login")
    samples: list[object] = [
        "١٢٣٤٥٦",
        "\uff11\uff12\uff13\uff14\uff15\uff16",  # fullwidth
        "¹²³⁴⁵⁶",
        "12345",
        "1234567",
        "12a456",
        None,
        123456,
        "9" * 10_240,
    ]
    for sample in samples:
        assert verify_challenge(challenge.pk, sample).reason == VerifyReason.MALFORMED
    assert state(challenge) == (ChallengeStatus.PENDING, 0, code_hash(challenge.pk, code))
    assert len(failures("malformed")) == len(samples)


@override_settings(EMAIL_OTP_CODE_LENGTH=8)
def test_the_expected_length_follows_the_setting(user: Any, issue: Issue) -> None:
    challenge, code = issue(user=user, purpose="login")
    assert len(code) == 8
    assert verify_challenge(challenge.pk, code[:6]).reason == VerifyReason.MALFORMED
    assert verify_challenge(challenge.pk, f"{code[:4]}-{code[4:]}").success


# ---------------------------------------------------------------------------------------------------------------
# SECRET_KEY rotation


def test_a_code_survives_rotation_with_the_old_key_in_fallbacks(user: Any, issue: Issue) -> None:
    with override_settings(SECRET_KEY=K1):
        challenge, code = issue(user=user, purpose="login")
    with override_settings(SECRET_KEY=K2, SECRET_KEY_FALLBACKS=[K1]):
        assert verify_challenge(challenge.pk, code).success


def test_a_code_dies_with_its_key_when_no_fallback_keeps_it(user: Any, issue: Issue) -> None:
    with override_settings(SECRET_KEY=K1):
        challenge, code = issue(user=user, purpose="login")
    with override_settings(SECRET_KEY=K2, SECRET_KEY_FALLBACKS=[]):
        result = verify_challenge(challenge.pk, code)
    assert (result.success, result.reason, result.attempts_remaining) == (False, VerifyReason.INVALID_CODE, 4)


def test_a_session_bound_code_survives_rotation(user: Any, issue: Issue) -> None:
    with override_settings(SECRET_KEY=K1):
        request = session_request()
        challenge, code = issue(user=user, purpose="step_up", request=request)
        session_key = end_request(request)
    with override_settings(SECRET_KEY=K2, SECRET_KEY_FALLBACKS=[K1]):
        assert verify_challenge(challenge.pk, code, request=session_request()).reason == VerifyReason.WRONG_BINDING
        result = verify_challenge(challenge.pk, code, request=session_request(session_key))
    assert (result.success, result.reason) == (True, None)
