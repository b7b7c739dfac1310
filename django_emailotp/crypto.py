"""Code generation, keyed hashing and constant-time comparison (SECURITY.md rule 1)."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterator

from django.conf import settings
from django.utils.crypto import salted_hmac

ASCII_DIGITS = frozenset("0123456789")
_SEPARATORS = str.maketrans("", "", " -")
# Input longer than this is malformed before any work is done on it.
MAX_RAW_CODE_LENGTH = 64

_CODE_SALT = "django_emailotp.crypto.code"
_BINDING_SALT = "django_emailotp.crypto.binding"
_EMAIL_SALT = "django_emailotp.crypto.email"


def generate_code(length: int) -> str:
    """A uniformly random code of ``length`` ASCII digits from the OS CSPRNG, zero-padded."""
    return f"{secrets.randbelow(10**length):0{length}d}"


def normalize_code(raw: object, length: int) -> str | None:
    """Strip spaces and hyphens; return the code if what is left is exactly ``length`` ASCII digits.

    ``str.isdigit()`` and ``int()`` accept non-ASCII digits ("١٢٣"), so membership in an ASCII set is used.
    """
    if not isinstance(raw, str) or len(raw) > MAX_RAW_CODE_LENGTH:
        return None
    code = raw.translate(_SEPARATORS)
    if len(code) != length or not ASCII_DIGITS.issuperset(code):
        return None
    return code


def _secrets() -> Iterator[str]:
    yield settings.SECRET_KEY
    yield from getattr(settings, "SECRET_KEY_FALLBACKS", ())


def code_hash(challenge_id: object, code: str, *, secret: str | None = None) -> str:
    """HMAC-SHA256, keyed from SECRET_KEY, over the challenge id and the code."""
    return salted_hmac(_CODE_SALT, f"{challenge_id}:{code}", secret=secret, algorithm="sha256").hexdigest()


def code_matches(challenge_id: object, code: str, stored_hash: str) -> bool:
    """Compare in constant time against the hash under SECRET_KEY and each of SECRET_KEY_FALLBACKS."""
    if not stored_hash:
        return False
    matched = False
    for secret in _secrets():
        # No early exit: every key is tried so timing does not reveal which one matched.
        matched |= hmac.compare_digest(code_hash(challenge_id, code, secret=secret), stored_hash)
    return matched


def binding_hash(credential: str, *, secret: str | None = None) -> str:
    """Keyed hash of a session key or API credential; also the audit trail's salted session hash."""
    return salted_hmac(_BINDING_SALT, credential, secret=secret, algorithm="sha256").hexdigest()


def binding_hashes(credential: str) -> tuple[str, ...]:
    """The credential's hash under SECRET_KEY, then under each of SECRET_KEY_FALLBACKS."""
    return tuple(binding_hash(credential, secret=secret) for secret in _secrets())


def email_pseudonym(email: str) -> str:
    """A stable keyed pseudonym for an address, for logs and the audit trail."""
    return salted_hmac(_EMAIL_SALT, email.strip().lower(), algorithm="sha256").hexdigest()[:24]
