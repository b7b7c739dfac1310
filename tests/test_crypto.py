"""Code generation (length, alphabet, zero padding, uniformity) and the keyed code hash."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Sequence
from functools import partial

import pytest
from django.core.mail import EmailMessage
from django.test import override_settings

from django_emailotp.crypto import code_hash, code_matches, generate_code
from django_emailotp.services import verify_challenge
from tests.test_issue import Capture, Issue, issue_and_read

SAMPLES = 20_000
# Chi-square with 9 degrees of freedom exceeds 46.3 with probability 5e-7: a fair generator practically never fails,
# while a skewed one (say, a first digit that is never 0) scores in the thousands.
CHI_SQUARE_LIMIT = 46.3
ASCII_CODE = re.compile(r"[0-9]+", re.ASCII)


@pytest.fixture
def issue(db: None, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]) -> Issue:
    return partial(issue_and_read, django_capture_on_commit_callbacks, mailoutbox)


def chi_square(codes: Sequence[str], position: int) -> float:
    counts = Counter(code[position] for code in codes)
    expected = len(codes) / 10
    return sum((counts.get(digit, 0) - expected) ** 2 / expected for digit in "0123456789")


@pytest.mark.parametrize("length", [6, 7, 8, 9, 10])
def test_issued_codes_have_the_configured_length(user: object, issue: Issue, length: int) -> None:
    with override_settings(EMAIL_OTP_CODE_LENGTH=length):
        challenge, code = issue(user=user, purpose="login")
        assert len(code) == length
        assert ASCII_CODE.fullmatch(code)
        assert challenge.code_hash == code_hash(challenge.pk, code)
        assert verify_challenge(challenge.pk, code).success


@pytest.mark.parametrize("length", [6, 8, 10])
def test_generated_codes_are_ascii_digits_zero_padded_and_uniform(length: int) -> None:
    codes = [generate_code(length) for _ in range(SAMPLES)]
    assert all(len(code) == length and ASCII_CODE.fullmatch(code) for code in codes)
    # One code in ten starts with "0": padding keeps those codes at full length (expected 2000, sd about 42).
    leading_zero = sum(code.startswith("0") for code in codes)
    assert 1_700 < leading_zero < 2_300
    for position in range(length):
        assert chi_square(codes, position) < CHI_SQUARE_LIMIT, f"digit {position} is not uniform"
    # 20,000 draws from 10**6 values collide about 200 times (birthday bound); from 10**8 or more, almost never.
    expected_collisions = SAMPLES**2 / (2 * 10**length)
    assert SAMPLES - len(set(codes)) < 2 * expected_collisions + 5


def test_the_uniformity_check_catches_a_skewed_generator() -> None:
    # The statistic itself must be able to fail: a generator that never starts a code with 0 (a classic
    # "random.randint(100000, 999999)" bug) is rejected at the first position and passes the others.
    skewed = [f"{100_000 + int(generate_code(6)) % 900_000:06d}" for _ in range(SAMPLES)]
    assert chi_square(skewed, 0) > 10 * CHI_SQUARE_LIMIT
    assert not any(code.startswith("0") for code in skewed)


def test_code_hash_is_keyed_hmac_sha256_over_id_and_code() -> None:
    digest = code_hash("3f1c9a7e-5b2d-4c6e-8f0a-1b3c5d7e9f1a", "012345")
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    # Not a plain hash of the code (a 10**6 space is reversed in milliseconds), and bound to the challenge id.
    assert digest != hashlib.sha256(b"012345").hexdigest()
    assert digest != hashlib.sha256(b"3f1c9a7e-5b2d-4c6e-8f0a-1b3c5d7e9f1a:012345").hexdigest()
    assert digest != code_hash("00000000-5b2d-4c6e-8f0a-1b3c5d7e9f1a", "012345")
    assert digest == code_hash("3f1c9a7e-5b2d-4c6e-8f0a-1b3c5d7e9f1a", "012345")
    with override_settings(SECRET_KEY="another-key-" + "x" * 50):
        assert code_hash("3f1c9a7e-5b2d-4c6e-8f0a-1b3c5d7e9f1a", "012345") != digest


def test_code_matches_compares_against_every_key() -> None:
    challenge_id = "3f1c9a7e-5b2d-4c6e-8f0a-1b3c5d7e9f1a"
    with override_settings(SECRET_KEY="old-key-" + "o" * 50):
        stored = code_hash(challenge_id, "012345")
    with override_settings(SECRET_KEY="new-key-" + "n" * 50, SECRET_KEY_FALLBACKS=["old-key-" + "o" * 50]):
        assert code_matches(challenge_id, "012345", stored)
        assert not code_matches(challenge_id, "012346", stored)
        assert not code_matches(challenge_id, "012345", "")
    with override_settings(SECRET_KEY="new-key-" + "n" * 50, SECRET_KEY_FALLBACKS=[]):
        assert not code_matches(challenge_id, "012345", stored)
