"""Delivering a challenge's code email: handing it to the queue or sending it in-process, generating the code at
send time, and recording the outcome.

Writes ``Challenge.code_hash``, ``delivery_status``, ``delivery_attempts``, ``sent_at`` and ``esp_message_id``, and
the delivery audit rows. The email itself is built by ``django_emailotp.delivery``; what the ESP later reports is
recorded by ``tracking``.
"""

from __future__ import annotations

import threading
import uuid

from django.db import connections
from django.db.models import F
from django.utils import timezone, translation

from django_emailotp import audit, delivery, signals
from django_emailotp.conf import FALLBACK_SYNC, app_settings
from django_emailotp.crypto import code_hash, email_pseudonym, generate_code
from django_emailotp.exceptions import DeliveryError, DeliveryUnavailable
from django_emailotp.models import AuditEventType, AuditOutcome, Challenge, ChallengeStatus, DeliveryStatus
from django_emailotp.services import dispatch
from django_emailotp.services.common import as_uuid, logger


def dispatch_delivery(challenge_id: uuid.UUID, *, in_background: bool = False) -> None:
    """Queue the email (Celery), or send it now when ``EMAIL_OTP_DELIVERY = "sync"``.

    A broker that cannot be reached is recorded on the challenge and in the audit trail, then raised as
    :class:`DeliveryUnavailable`, unless ``EMAIL_OTP_DELIVERY_FALLBACK = "sync"`` sends in-process instead.
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
        queue.enqueue_delivery(challenge_id)
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
            Challenge.objects.filter(pk=challenge_id).update(delivery_status=DeliveryStatus.FAILED)
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


def deliver_challenge(challenge_id: uuid.UUID | str, *, final: bool = True) -> DeliveryStatus:
    """Generate the code, store only its keyed hash, and send the email.

    Each call generates a new code and overwrites the stored hash before sending, so a retried send never
    leaves two different valid codes. A challenge that is no longer pending is not sent.
    Raises :class:`DeliveryError` for a transient failure that is worth retrying (``final=False``).
    """
    pk = as_uuid(challenge_id)
    challenge = Challenge.objects.select_related("user").filter(pk=pk).first() if pk is not None else None
    now = timezone.now()
    if challenge is None:
        return DeliveryStatus.SKIPPED
    if challenge.status != ChallengeStatus.PENDING or challenge.expires_at <= now:
        Challenge.objects.filter(pk=challenge.pk).update(delivery_status=DeliveryStatus.SKIPPED)
        return DeliveryStatus.SKIPPED
    code = generate_code(app_settings.CODE_LENGTH)
    if not challenge.send_email:
        # The same work as a real send up to the hand-off (SECURITY.md rule 8: an unknown or quietly refused address
        # must not be told apart by the time it costs): a code, its keyed hash and the message, none of them kept.
        code_hash(challenge.pk, code)
        delivery.build_message(challenge, code)
        del code
        Challenge.objects.filter(pk=challenge.pk).update(delivery_status=DeliveryStatus.SKIPPED)
        return DeliveryStatus.SKIPPED
    stored = Challenge.objects.filter(pk=challenge.pk, status=ChallengeStatus.PENDING).update(
        code_hash=code_hash(challenge.pk, code), delivery_attempts=F("delivery_attempts") + 1
    )
    if not stored:
        return DeliveryStatus.SKIPPED
    message = delivery.build_message(challenge, code)
    del code
    try:
        message.send(fail_silently=False)
    except Exception as exc:
        transient = delivery.is_transient(exc)
        status = DeliveryStatus.FAILED if final or not transient else DeliveryStatus.RETRYING
        Challenge.objects.filter(pk=challenge.pk).update(delivery_status=status)
        audit.record(
            AuditEventType.DELIVERY_RETRY if status == DeliveryStatus.RETRYING else AuditEventType.DELIVERY_FAILED,
            AuditOutcome.FAILURE,
            challenge=challenge,
            reason="transient" if transient else "permanent",
            data={"error": f"{type(exc).__name__}: {exc}"[:500]},
        )
        logger.warning(
            "emailotp: sending challenge %s to %s failed (%s): %s",
            challenge.pk,
            email_pseudonym(challenge.email),
            "transient" if transient else "permanent",
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
            raise DeliveryError(str(exc), transient=True) from exc
        return status
    message_id = delivery.sent_message_id(message)
    Challenge.objects.filter(pk=challenge.pk).update(
        delivery_status=DeliveryStatus.SENT, sent_at=timezone.now(), esp_message_id=message_id
    )
    audit.record(
        AuditEventType.CHALLENGE_SENT,
        AuditOutcome.SUCCESS,
        challenge=challenge,
        data={"esp_message_id": message_id} if message_id else None,
    )
    signals.challenge_sent.send(sender=Challenge, challenge=challenge, message_id=message_id)
    return DeliveryStatus.SENT
