"""Backup codes: generation, normalising what people type, and argon2id hashing (SECURITY.md: long-lived secrets).

A code is ``length`` characters of Crockford base32 (5 bits each: 10 characters are 50 bits), shown as
``XXXXX-XXXXX``. Entry ignores case, spaces and hyphens and reads I/L as 1 and O as 0, as Crockford intends.
Each stored code has an argon2id hash and a short keyed lookup tag, so checking a code costs one argon2 verify,
not one per stored code.
"""

from __future__ import annotations

import secrets
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from django.utils.crypto import salted_hmac

from django_emailotp.conf import app_settings

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_READ_AS = str.maketrans({"I": "1", "L": "1", "O": "0"})
_SEPARATORS = str.maketrans("", "", " -")
MAX_RAW_LENGTH = 64
_LOOKUP_SALT = "django_emailotp.backup_codes.lookup"
LOOKUP_LENGTH = 8


def generate(count: int, length: int) -> list[str]:
    """``count`` distinct codes from the OS CSPRNG."""
    codes: set[str] = set()
    while len(codes) < count:
        codes.add("".join(secrets.choice(ALPHABET) for _ in range(length)))
    return sorted(codes)


def display(code: str) -> str:
    """``ABCDEFGHJK`` -> ``ABCDE-FGHJK``: easier to copy by hand."""
    half = (len(code) + 1) // 2
    return f"{code[:half]}-{code[half:]}"


def normalize(raw: object, length: int) -> str | None:
    """The canonical code for what was typed, or None when it cannot be one (ASCII Crockford characters only)."""
    if not isinstance(raw, str) or len(raw) > MAX_RAW_LENGTH or not raw.isascii():
        return None
    code = raw.translate(_SEPARATORS).upper().translate(_READ_AS)
    if len(code) != length or any(ch not in ALPHABET for ch in code):
        return None
    return code


def lookup_tag(code: str) -> str:
    """A short keyed tag to find the candidate row; 32 bits, so it narrows the search without identifying a code."""
    return salted_hmac(_LOOKUP_SALT, code, algorithm="sha256").hexdigest()[:LOOKUP_LENGTH]


@lru_cache(maxsize=4)
def _hasher(time_cost: int, memory_cost: int, parallelism: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism)


def hasher() -> PasswordHasher:
    params = app_settings.BACKUP_CODE_HASHER
    return _hasher(params["time_cost"], params["memory_cost"], params["parallelism"])


def make_hash(code: str) -> str:
    return hasher().hash(code)


def matches(stored_hash: str, code: str) -> bool:
    try:
        return hasher().verify(stored_hash, code)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def spend_equal_time(code: str) -> None:
    """One argon2 verify against a throwaway hash, so a code with no candidate row takes as long as a wrong one."""
    matches(_dummy_hash(), code)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return make_hash(generate(1, 10)[0])
