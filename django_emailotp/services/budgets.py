"""Send budgets: which rate limits one code email counts against, by who asks and for which address (SECURITY.md
rule 18), and how a refusal is answered (rule 19).

Three kinds of send, each with counters nobody else can spend:

- ``OWN``: a user's own code to their own address (step-up, the second factor after the password, verifying their
  current address). Counted per path, user and address together (``send_per_user``, ``send_per_user_daily``), so
  anonymous requests and other users never touch it. Past it the user is told: :class:`SendLimitReached` (429).
- ``NEW_ADDRESS``: a signed-in user's code to an address that is not yet theirs (email verification and change).
  Counted per client IP, per target address per day (``send_per_new_address_daily``, apart from whatever the
  address's owner sends themselves), and per requester and target. Past one, the requester is told.
- ``ANONYMOUS``: an address-based request anyone can make (sign-in by code). Counted per client IP, per IP and
  address together, and under a per-address ceiling that only a distributed attack reaches. Past the per-IP limit
  the answer is 429 (it says nothing about the address); past the others the send is suppressed but answered as
  sent, since a refusal would tell whether the address has an account. Every suppressed send logs a WARNING with
  the address pseudonymised; the audit row stays.

A send refused by one limit is counted against none of the others (:func:`limits.take_all`).
"""

from __future__ import annotations

import enum
from typing import Any

from django_emailotp import audit, limits, purposes
from django_emailotp.adapter import get_adapter
from django_emailotp.crypto import email_pseudonym
from django_emailotp.exceptions import RateLimited, SendLimitReached
from django_emailotp.models import AuditEventType, AuditOutcome
from django_emailotp.requestinfo import RequestMeta, client_ip
from django_emailotp.services.common import logger
from django_emailotp.services.lockouts import scope_for


class SendKind(enum.StrEnum):
    OWN = "own"
    NEW_ADDRESS = "new_address"
    ANONYMOUS = "anonymous"


def kind_of_send(user: Any | None, address: str, purpose: str) -> SendKind:
    """Sign-in (and any send without a user) is anonymous; a user's code to another address is a new address."""
    if user is None or purpose == purposes.SIGN_IN:
        return SendKind.ANONYMOUS
    own = get_adapter().destination_for(user)
    return SendKind.OWN if own and own.strip().lower() == address.strip().lower() else SendKind.NEW_ADDRESS


def _joined(*parts: str) -> str:
    """A counter subject made of several keys; empty (the limit does not apply) when any part is unknown."""
    return "|".join(parts) if all(parts) else ""


def limits_for(
    kind: SendKind, user: Any | None, address: str, purpose: str, ip_address: str | None
) -> list[tuple[str, str]]:
    """The (limit, subject) pairs a send of ``kind`` counts against, in the order they are checked."""
    ip = limits.ip_subject(ip_address)
    target = limits.subject_of(address)
    if kind == SendKind.ANONYMOUS:
        return [
            (limits.SEND_PER_IP, ip),
            (limits.SEND_PER_IP_AND_ADDRESS, _joined(ip, target)),
            (limits.SEND_PER_IP_AND_ADDRESS_DAILY, _joined(ip, target)),
            (limits.SEND_PER_ADDRESS, target),
            (limits.SEND_PER_ADDRESS_DAILY, target),
        ]
    assert user is not None
    own = _joined(str(scope_for(purpose)), limits.subject_of(user.pk), target)
    budget = [(limits.SEND_PER_USER, own), (limits.SEND_PER_USER_DAILY, own)]
    if kind == SendKind.NEW_ADDRESS:
        return [(limits.SEND_PER_IP, ip), (limits.SEND_PER_NEW_ADDRESS_DAILY, target), *budget]
    return budget


def _record(
    usage: limits.Usage, user: Any | None, address: str, purpose: str, meta: RequestMeta, answered_as: str | None
) -> None:
    audit.record(
        AuditEventType.RATE_LIMITED,
        AuditOutcome.FAILURE,
        reason=usage.name,
        user_id=user.pk if user is not None else None,
        purpose=purpose,
        email_pseudonym=email_pseudonym(address),
        meta=meta,
        data={"retry_after": usage.retry_after} | ({"answered_as": answered_as} if answered_as else {}),
    )


def refuse_past_ip_limit(address: str, purpose: str, request: Any) -> None:
    """Raise :class:`RateLimited` (audited) when the client IP is already past ``send_per_ip``.

    Reads only the request's address and the cache: sign-in calls it before any database lookup, so a flood of
    refused requests costs no user-table query. The count itself is taken later, by :func:`count_send`.
    """
    ip = limits.ip_subject(client_ip(request)) if request is not None else ""
    usage = limits.peek(limits.SEND_PER_IP, ip)
    if usage is not None and usage.count >= usage.limit:
        _record(usage, None, address, purpose, RequestMeta.from_request(request), None)
        raise RateLimited(usage.retry_after, usage.name)


def count_send(kind: SendKind, user: Any | None, address: str, purpose: str, meta: RequestMeta) -> bool:
    """Count one send against its budget. True: send it. False: suppressed (anonymous only, answered as sent).

    Raises :class:`RateLimited` past ``send_per_ip`` and :class:`SendLimitReached` when a signed-in requester is
    past one of their own limits; each refusal is audited.
    """
    exceeded = limits.take_all(limits_for(kind, user, address, purpose, meta.ip_address))
    if exceeded is None:
        return True
    if exceeded.name == limits.SEND_PER_IP:
        _record(exceeded, user, address, purpose, meta, None)
        raise RateLimited(exceeded.retry_after, exceeded.name)
    if kind != SendKind.ANONYMOUS:
        _record(exceeded, user, address, purpose, meta, "refused")
        raise SendLimitReached(exceeded.retry_after, exceeded.name)
    _record(exceeded, user, address, purpose, meta, "accepted")
    logger.warning(
        "emailotp: no %s code sent to %s: the %s limit is reached (answered as sent)",
        purpose,
        email_pseudonym(address),
        exceeded.name,
    )
    return False
