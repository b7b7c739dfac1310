"""Rate limits on a shared cache, through django-ratelimit's fixed-window counters.

Every key is a keyed hash (never a raw address or IP), and a cache that fails makes the limiter fail closed.
The cache is django-ratelimit's: ``RATELIMIT_USE_CACHE`` (default ``"default"``).
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django_ratelimit import ALL
from django_ratelimit.core import _get_window, _make_cache_key, _split_rate, get_usage

from django_emailotp.conf import app_settings
from django_emailotp.crypto import binding_hash
from django_emailotp.exceptions import LimiterUnavailable, RateLimited

logger = logging.getLogger("django_emailotp")

# Send budgets (SECURITY.md rule 18): every counter is keyed by what the requester controls, so nobody spends
# another's. docs/security.md has the table of which requests count against which.
# A user's own codes (step-up, the second factor after the password, verifying their own address), per path, user
# and address together: only that user's own requests count here.
SEND_PER_USER = "send_per_user"
SEND_PER_USER_DAILY = "send_per_user_daily"
# Anonymous, address-based requests (sign-in): per client IP; per IP and address together; and a ceiling per
# address over every requester, which only a distributed attack reaches.
SEND_PER_IP = "send_per_ip"
SEND_PER_IP_AND_ADDRESS = "send_per_ip_and_address"
SEND_PER_IP_AND_ADDRESS_DAILY = "send_per_ip_and_address_daily"
SEND_PER_ADDRESS = "send_per_address"
SEND_PER_ADDRESS_DAILY = "send_per_address_daily"
# Codes to an address that is not yet the requester's (email verification and change), per target address, apart
# from whatever that address's owner sends themselves.
SEND_PER_NEW_ADDRESS_DAILY = "send_per_new_address_daily"
VERIFY_FAILURES_PER_IP = "verify_failures_per_ip"
BACKUP_CODE_FAILURES_PER_USER = "backup_code_failures_per_user"

DEFAULT_RATES = {
    SEND_PER_USER: "5/h",
    SEND_PER_USER_DAILY: "20/d",
    SEND_PER_IP: "20/h",
    SEND_PER_IP_AND_ADDRESS: "5/h",
    SEND_PER_IP_AND_ADDRESS_DAILY: "10/d",
    SEND_PER_ADDRESS: "10/h",
    SEND_PER_ADDRESS_DAILY: "30/d",
    SEND_PER_NEW_ADDRESS_DAILY: "5/d",
    VERIFY_FAILURES_PER_IP: "50/h",
    # Backup codes have their own throttle: they stay usable while the email-code path is locked.
    BACKUP_CODE_FAILURES_PER_USER: "5/15m",
}


def rate_for(name: str) -> str | None:
    """The project's rate for a limit (``EMAIL_OTP_RATES``), else the default; None switches it off."""
    rates = app_settings.RATES
    return rates[name] if name in rates else DEFAULT_RATES[name]


@dataclass(frozen=True)
class Usage:
    name: str
    count: int
    limit: int
    retry_after: int

    @property
    def exceeded(self) -> bool:
        return self.count > self.limit


def _counter_value(name: str, subject: str) -> str:
    return binding_hash(f"ratelimit:{name}:{subject}")


def _usage(name: str, subject: str, *, increment: bool) -> Usage | None:
    rate = rate_for(name)
    if rate is None or not subject:
        return None
    key = _counter_value(name, subject)
    try:
        usage = get_usage(
            None, group=f"emailotp.{name}", key=lambda _group, _request: key, rate=rate, increment=increment
        )
    except Exception as exc:
        logger.error("emailotp: the rate-limit cache failed (%s); refusing: %s", name, exc)
        raise LimiterUnavailable("The rate limiter is unavailable.") from exc
    if usage is None:  # RATELIMIT_ENABLE = False
        return None
    if usage["time_left"] < 0:  # django-ratelimit's sign that the cache could not count
        logger.error("emailotp: the rate-limit cache could not count (%s); refusing", name)
        raise LimiterUnavailable("The rate limiter is unavailable.")
    # The window includes its last second (time_left 0): a retry succeeds one second after it.
    return Usage(name, usage["count"], usage["limit"], usage["time_left"] + 1)


def hit(limits: list[tuple[str, str]]) -> Usage | None:
    """Count one event against each (limit name, subject); return the first limit now exceeded, if any."""
    exceeded = None
    for name, subject in limits:
        usage = _usage(name, subject, increment=True)
        if exceeded is None and usage is not None and usage.exceeded:
            exceeded = usage
    return exceeded


def take(name: str, subject: str) -> Usage | None:
    """Count one event before it happens; the usage returned includes it (``exceeded``: refuse it).

    Counting first is what makes a limit hold under concurrency: of any number of simultaneous callers, in any
    number of processes, at most ``limit`` see it not exceeded (a peek now and a hit later would let through every
    caller in between). An event that does not count after all (a success, a refusal) calls :func:`give_back`.
    """
    return _usage(name, subject, increment=True)


def take_all(limits: list[tuple[str, str]]) -> Usage | None:
    """:func:`take` one event from each (limit name, subject) in order; return the first limit it exceeds, if any.

    A refused event counts against none of them: on the first limit exceeded, every count taken so far (that one's
    included) is given back, and the limits after it are not touched.
    """
    taken: list[tuple[str, str]] = []
    for name, subject in limits:
        usage = take(name, subject)
        taken.append((name, subject))
        if usage is not None and usage.exceeded:
            for done in taken:
                give_back(*done)
            return usage
    return None


def give_back(name: str, subject: str) -> None:
    """Undo one :func:`take`. Never raises: a count that cannot be lowered stays high, on the limit's safe side."""
    rate = rate_for(name)
    if rate is None or not subject or not getattr(settings, "RATELIMIT_ENABLE", True):
        return
    value = _counter_value(name, subject)
    # The key get_usage(group, key, rate, method=ALL) counts under; django-ratelimit has no decrement of its own.
    cache_key = _make_cache_key(f"emailotp.{name}", _get_window(value, _split_rate(rate)[1]), rate, value, ALL)
    try:
        caches[getattr(settings, "RATELIMIT_USE_CACHE", "default")].decr(cache_key)
    except ValueError:  # the window ended meanwhile, and its counter with it
        pass
    except Exception as exc:
        logger.error("emailotp: the rate-limit cache failed giving back a %s count: %s", name, exc)


def peek(name: str, subject: str) -> Usage | None:
    """The limit's usage without counting; None when it is off or the subject is empty."""
    return _usage(name, subject, increment=False)


def ensure_not_exceeded(name: str, subject: str) -> None:
    """Raise :class:`RateLimited` when the count has already reached the limit."""
    usage = peek(name, subject)
    if usage is not None and usage.count >= usage.limit:
        raise RateLimited(usage.retry_after, name)


def subject_of(value: Any) -> str:
    return "" if value is None else str(value).strip().lower()


def ip_subject(ip: str | None) -> str:
    """What a per-IP limit counts a client address (``RequestMeta.ip_address``, valid or None) as: IPv4 as itself
    (an IPv4-mapped IPv6 address too), IPv6 as its ``EMAIL_OTP_IPV6_PREFIX_LENGTH`` network, since one subscriber
    holds a whole /64 and can pick any address in it. The audit trail keeps the exact address; only counters group."""
    if not ip:
        return ""
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, app_settings.IPV6_PREFIX_LENGTH), strict=False))
    return str(address)
