"""Delivering a challenge's code email: handing it to the queue or sending it in-process, generating the code at
send time, and recording the outcome.

Writes ``Challenge.code_hash``, ``delivery_status``, ``delivery_attempts``, ``delivery_deadline``,
``delivery_error``, ``sent_at`` and ``esp_message_id``, and the delivery audit rows. The row is the outbox: each
try is claimed on it, so a queue may deliver a message twice without a second email (``outbox`` has the sweep).
The email itself is built by ``django_emailotp.delivery``; what the ESP later reports is recorded by ``tracking``.
"""

from __future__ import annotations

import random
import threading
import uuid
from datetime import timedelta

from django.db import connections
from django.db.models import F, QuerySet
from django.utils import timezone, translation

from django_emailotp import audit, delivery, signals
from django_emailotp.conf import FALLBACK_SYNC, app_settings
from django_emailotp.crypto import code_hash, email_pseudonym, generate_code
from django_emailotp.exceptions import DeliveryError, DeliveryUnavailable
from django_emailotp.models import AuditEventType, AuditOutcome, Challenge, ChallengeStatus, DeliveryStatus
from django_emailotp.services import dispatch
from django_emailotp.services.common import as_uuid, logger


def dispatch_delivery(challenge_id: uuid.UUID, *, in_background: bool = False) -> None:
    """Queue the email of a new challenge (Celery or Django Tasks), or send it now when ``EMAIL_OTP_DELIVERY =
    "sync"``.

    A broker that cannot be reached is recorded on the challenge and in the audit trail, then raised as
    :class:`DeliveryUnavailable`, unless ``EMAIL_OTP_DELIVERY_FALLBACK = "sync"`` sends in-process instead.
    The challenge is then ``failed``, so the sweep never sends it later: the user was told it did not go out.
    A failed in-process send raises :class:`DeliveryUnavailable` too, so the caller can tell the user.
    """
    queue = dispatch.queue()
    if queue is None:
        if in_background:
            _send_in_background(challenge_id)
        else:
            _send_now(challenge_id)
        return
    try:
        queue.enqueue_delivery(challenge_id, attempt=0)
    except DeliveryUnavailable as exc:
        challenge = Challenge.objects.get(pk=challenge_id)
        fallback = app_settings.DELIVERY_FALLBACK == FALLBACK_SYNC
        audit.record(
            AuditEventType.DELIVERY_UNAVAILABLE,
            AuditOutcome.FAILURE,
            challenge=challenge,
            reason="broker_unreachable",
            data={"error": str(exc), "fallback": "sync" if fallback else "none"},
        )
        logger.error("emailotp: broker unreachable for challenge %s: %s", challenge_id, exc)
        if not fallback:
            Challenge.objects.filter(pk=challenge_id).update(
                delivery_status=DeliveryStatus.FAILED, delivery_deadline=None
            )
            raise
        _send_now(challenge_id)


BACKGROUND_SENDS: list[threading.Thread] = []


def _send_in_background(challenge_id: uuid.UUID) -> None:
    """In-process delivery on a thread of its own: failures are recorded by deliver_challenge, never raised."""
    # The active language is per thread: carry the request's over, so the email speaks the page's language.
    language = translation.get_language()

    def run() -> None:
        try:
            with translation.override(language):
                deliver_challenge(challenge_id, final=True)
        except Exception:
            logger.exception("emailotp: background delivery of challenge %s failed", challenge_id)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, name=f"emailotp-send-{challenge_id}", daemon=True)
    # Kept (briefly) so tests and graceful shutdowns can wait for sends in flight.
    BACKGROUND_SENDS[:] = [t for t in BACKGROUND_SENDS if t.is_alive()] + [thread]
    thread.start()


def wait_for_background_sends(timeout: float = 10.0) -> None:
    """Join the in-process sends still running (tests; shutdown hooks)."""
    for thread in list(BACKGROUND_SENDS):
        thread.join(timeout)


def _send_now(challenge_id: uuid.UUID) -> None:
    if deliver_challenge(challenge_id, final=True) == DeliveryStatus.FAILED:
        raise DeliveryUnavailable("The code email could not be sent.")


def retry_delay(attempts: int) -> float:
    """Seconds to wait before the next try, after ``attempts`` tries (1 or more).

    Exponential backoff with jitter: uniform between half and all of
    ``min(EMAIL_OTP_DELIVERY_RETRY_BACKOFF_MAX, EMAIL_OTP_DELIVERY_RETRY_BACKOFF * 2 ** (attempts - 1))``.
    """
    ceiling = min(app_settings.DELIVERY_RETRY_BACKOFF_MAX, app_settings.DELIVERY_RETRY_BACKOFF * 2 ** (attempts - 1))
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not a secret


def deliver_challenge(
    challenge_id: uuid.UUID | str, *, final: bool = True, attempt: int | None = None
) -> DeliveryStatus:
    """Generate the code, store only its keyed hash, and send the email.

    Each call generates a new code and overwrites the stored hash before sending, so a retried send never
    leaves two different valid codes. A challenge that is no longer pending is not sent.

    ``attempt`` is the number of tries the message that asks for this one saw (queues pass it; ``None`` takes the
    row as it is). The try is claimed with a conditional ``UPDATE`` on that number, so of two messages for the
    same try (a redelivery, the sweep's and a late worker's) exactly one sends; the other changes nothing.

    ``final=False`` means the caller retries: a transient failure raises :class:`DeliveryError` (with the
    attempt number and the backoff) while ``EMAIL_OTP_DELIVERY_MAX_RETRIES`` retries are left, and the last one
    ends the delivery as ``failed``.
    """
    pk = as_uuid(challenge_id)
    challenge = Challenge.objects.select_related("user").filter(pk=pk).first() if pk is not None else None
    now = timezone.now()
    if challenge is None:
        return DeliveryStatus.SKIPPED
    if attempt is not None and challenge.delivery_attempts != attempt:
        logger.info("emailotp: try %s of challenge %s was already taken; nothing sent", attempt + 1, challenge.pk)
        return DeliveryStatus.SKIPPED
    tries = challenge.delivery_attempts
    if challenge.status != ChallengeStatus.PENDING or challenge.expires_at <= now:
        Challenge.objects.filter(pk=challenge.pk, delivery_attempts=tries).update(
            delivery_status=DeliveryStatus.SKIPPED, delivery_deadline=None
        )
        return DeliveryStatus.SKIPPED
    code = generate_code(app_settings.CODE_LENGTH)
    if not challenge.send_email:
        # The same work as a real send up to the hand-off (SECURITY.md rule 8: an unknown or quietly refused address
        # must not be told apart by the time it costs): a code, its keyed hash and the message, none of them kept.
        code_hash(challenge.pk, code)
        delivery.build_message(challenge, code)
        del code
        Challenge.objects.filter(pk=challenge.pk, delivery_attempts=tries).update(
            delivery_status=DeliveryStatus.SKIPPED, delivery_deadline=None
        )
        return DeliveryStatus.SKIPPED
    claimed = Challenge.objects.filter(pk=challenge.pk, status=ChallengeStatus.PENDING, delivery_attempts=tries).update(
        code_hash=code_hash(challenge.pk, code),
        delivery_attempts=F("delivery_attempts") + 1,
        delivery_deadline=now + timedelta(seconds=app_settings.DELIVERY_LEASE),
    )
    if not claimed:
        return DeliveryStatus.SKIPPED
    tries += 1
    mine = Challenge.objects.filter(pk=challenge.pk, delivery_attempts=tries)  # this try's outcome, unless overtaken
    message = delivery.build_message(challenge, code)
    del code
    try:
        message.send(fail_silently=False)
    except Exception as exc:
        return _record_failure(challenge, mine, exc, tries, last=final or tries > app_settings.DELIVERY_MAX_RETRIES)
    message_id = delivery.sent_message_id(message)
    mine.update(
        delivery_status=DeliveryStatus.SENT, sent_at=timezone.now(), esp_message_id=message_id, delivery_deadline=None
    )
    audit.record(
        AuditEventType.CHALLENGE_SENT,
        AuditOutcome.SUCCESS,
        challenge=challenge,
        data={"esp_message_id": message_id} if message_id else None,
    )
    signals.challenge_sent.send(sender=Challenge, challenge=challenge, message_id=message_id)
    return DeliveryStatus.SENT


def _record_failure(
    challenge: Challenge, mine: QuerySet[Challenge], exc: Exception, tries: int, *, last: bool
) -> DeliveryStatus:
    """Mark try ``tries`` failed (or retrying), audit it, send the signal; raise DeliveryError to have it retried."""
    transient = delivery.is_transient(exc)
    status = DeliveryStatus.FAILED if last or not transient else DeliveryStatus.RETRYING
    retry_in = retry_delay(tries) if status == DeliveryStatus.RETRYING else 0.0
    # A retry's lease starts when it is due, so the sweep leaves it to the queue until then.
    deadline = timezone.now() + timedelta(seconds=retry_in + app_settings.DELIVERY_LEASE) if retry_in else None
    mine.update(delivery_status=status, delivery_error=type(exc).__name__[:100], delivery_deadline=deadline)
    audit.record(
        AuditEventType.DELIVERY_RETRY if status == DeliveryStatus.RETRYING else AuditEventType.DELIVERY_FAILED,
        AuditOutcome.FAILURE,
        challenge=challenge,
        reason="transient" if transient else "permanent",
        data={"error": f"{type(exc).__name__}: {exc}"[:500], "attempt": tries},
    )
    logger.warning(
        "emailotp: sending challenge %s to %s failed (%s, try %s): %s",
        challenge.pk,
        email_pseudonym(challenge.email),
        "transient" if transient else "permanent",
        tries,
        type(exc).__name__,
    )
    signals.challenge_delivery_failed.send(
        sender=Challenge,
        challenge=challenge,
        error=type(exc).__name__,
        transient=transient,
        final=status == DeliveryStatus.FAILED,
    )
    if status == DeliveryStatus.RETRYING:
        raise DeliveryError(str(exc), transient=True, attempt=tries, retry_in=retry_in) from exc
    return status
