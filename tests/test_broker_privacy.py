"""Ids only in the broker (SECURITY.md rule 22; issue 10, finding 8): every task's message, read back raw from Redis
and from RabbitMQ, carries ids and plain numbers, never an address, an IP address, a user agent or a code.

Before the fix, the notice tasks carried their context in clear: the replaced address of an email change and the
IP address of a lockout went through the broker. Their details now wait in a ``Notice`` row the task reads by id.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.core import mail
from django.test import RequestFactory, override_settings

from django_emailotp import services
from django_emailotp.models import Notice
from django_emailotp.services import VerifyReason, confirm_email, issue_challenge, verify_challenge
from django_emailotp.tasks import purge_expired_records, sweep_deliveries
from tests.conftest import BROKERS, code_from
from tests.factories import UserFactory
from tests.worker import broker_at, broker_url, forget_queues, new_queue_name, raw_messages

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

OLD_ADDRESS = "alice.private@example.com"
NEW_ADDRESS = "alice.renamed@example.org"
IP_ADDRESS = "203.0.113.77"
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0 PrivacyProbe/4.2"


@pytest.fixture(params=BROKERS)
def held(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(broker, queue): every task is published to a queue nobody consumes, so its raw messages can be read."""
    broker, queue = str(request.param), f"{new_queue_name()}-held"
    try:
        with (
            broker_at(broker_url(broker)),
            override_settings(EMAIL_OTP_DELIVERY="celery", EMAIL_OTP_CELERY_QUEUE=queue, EMAIL_OTP_LOCKOUT_THRESHOLD=1),
        ):
            yield broker, queue
    finally:
        forget_queues(queue, broker)


def signed_in_request(user: Any) -> Any:
    request = RequestFactory().post("/", REMOTE_ADDR=IP_ADDRESS, HTTP_USER_AGENT=USER_AGENT)
    request.session = SessionStore()
    request.session.create()
    request.user = user
    return request


def send_now(challenge_id: uuid.UUID) -> str:
    """Build and send the challenge's email here (its queued message is never consumed); the code it carries."""
    assert services.deliver_challenge(challenge_id) == "sent"
    return code_from(mail.outbox[-1])


def test_every_task_message_carries_ids_and_plain_numbers_only(held: tuple[str, str]) -> None:
    broker, queue = held
    user = UserFactory(username="alice", email=OLD_ADDRESS)
    request = signed_in_request(user)

    step_up = issue_challenge(user=user, purpose="step_up", request=request)
    code = send_now(step_up.pk)
    wrong = "000000" if code != "000000" else "111111"
    locked = verify_challenge(step_up.pk, wrong, request=request)  # the lockout notice: IP address and device
    assert locked.reason == VerifyReason.INVALID_CODE
    assert services.lift_lockout(user)
    change = services.request_email_verification(user, NEW_ADDRESS, request=request, change=True)
    new_code = send_now(change.pk)
    assert confirm_email(request, change.pk, new_code).changed  # the notice to the replaced address
    purge_expired_records.apply_async(queue=queue)
    sweep_deliveries.apply_async(queue=queue)

    messages = raw_messages(broker, queue, take=True)

    assert sorted(message.task for message in messages) == [
        "emailotp.purge",
        "emailotp.send_code",
        "emailotp.send_code",
        "emailotp.send_notice",
        "emailotp.send_notice",
        "emailotp.sweep",
    ]
    notice_ids = sorted(str(pk) for pk in Notice.objects.values_list("pk", flat=True))
    assert sorted(Notice.objects.values_list("kind", flat=True)) == ["email_changed", "locked_out"]
    arguments = sorted((message.task, message.arguments) for message in messages)
    assert arguments == sorted(
        [
            ("emailotp.purge", ([], {})),
            ("emailotp.send_code", ([str(step_up.pk), 0], {})),
            ("emailotp.send_code", ([str(change.pk), 0], {})),
            *[("emailotp.send_notice", ([notice_id], {})) for notice_id in notice_ids],
            ("emailotp.sweep", ([], {})),
        ]
    )
    personal = [
        OLD_ADDRESS,
        NEW_ADDRESS,
        "alice",
        "example.com",
        "example.org",
        IP_ADDRESS,
        "203.0.113",
        USER_AGENT,
        "Firefox",
        "Linux",
        "PrivacyProbe",
        code,
        new_code,
    ]
    for message in messages:
        found = [value for value in personal if value.encode() in message.raw]
        assert found == [], f"{message.task} carries {found}"
    # What the notices say stays in the database, for the task to read by id.
    lockout_notice = Notice.objects.get(kind="locked_out")
    assert lockout_notice.context["ip_address"] == IP_ADDRESS
    assert lockout_notice.context["device"] == "Firefox on Linux"
    assert Notice.objects.get(kind="email_changed").recipient == OLD_ADDRESS
