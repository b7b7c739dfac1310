"""Delivery tracking: ESP webhooks, in each ESP's own format and with its own authentication, posted to anymail's
tracking views, update the challenge's delivery status and write ``delivery_status`` audit rows.

Postmark's sending API is the local stand-in from tests/mailservers.py, so the ESP message id the webhook refers
to is the one anymail's real Postmark backend recorded when the code email went out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from django.core.mail import EmailMessage
from django.test import Client, override_settings
from django.urls import include, path

from django_emailotp import signals
from django_emailotp.crypto import email_pseudonym
from django_emailotp.models import AuditEvent, Challenge, DeliveryStatus
from django_emailotp.services import issue_challenge
from example_project.env import mail_settings
from tests.mailservers import POSTMARK_TOKEN, FakePostmark, running_fake_postmark
from tests.test_issue import Capture

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

# The test URLconf: anymail's webhook views, as a project includes them.
urlpatterns = [path("anymail/", include("anymail.urls"))]

WEBHOOK_SECRET = "anymail-webhook:6Jq2xY8kP3vN"
MAILGUN_SIGNING_KEY = "key-mailgun-webhook-signing-for-tests"
POSTMARK_URL = "/anymail/postmark/tracking/"
MAILGUN_URL = "/anymail/mailgun/tracking/"
ADDRESS = "alice@example.com"
EVENT_TIME = datetime(2026, 3, 2, 9, 0, 7, tzinfo=UTC)


@pytest.fixture(scope="module")
def postmark_api() -> Iterator[FakePostmark]:
    with running_fake_postmark() as fake:
        yield fake


@pytest.fixture(autouse=True)
def anymail_settings(postmark_api: FakePostmark) -> Iterator[None]:
    postmark_api.reset()
    with override_settings(
        ANYMAIL={
            "WEBHOOK_SECRET": WEBHOOK_SECRET,
            "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_SIGNING_KEY,
            "POSTMARK_SERVER_TOKEN": POSTMARK_TOKEN,
            "POSTMARK_API_URL": postmark_api.api_url,
        }
    ):
        yield


@pytest.fixture
def webhook_client() -> Client:
    """An ESP calling the webhook URL with the basic-auth credentials it was configured with."""
    credentials = base64.b64encode(WEBHOOK_SECRET.encode()).decode()
    return Client(HTTP_AUTHORIZATION=f"Basic {credentials}")


@pytest.fixture
def status_signals() -> Iterator[list[dict[str, Any]]]:
    received: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        kwargs.pop("signal")
        received.append({"sender": sender, **kwargs})

    signals.challenge_delivery_status.connect(receiver)
    yield received
    signals.challenge_delivery_status.disconnect(receiver)


def issue_through_postmark(
    capture: Capture, postmark_api: FakePostmark, user: Any, purpose: str = "login"
) -> Challenge:
    """Issue a code and send it with anymail's Postmark backend (to the stand-in API); the row holds its MessageID."""
    with override_settings(**mail_settings("anymail.backends.postmark.EmailBackend")), capture(execute=True):
        challenge = issue_challenge(user=user, purpose=purpose)
    challenge.refresh_from_db()
    assert challenge.delivery_status == DeliveryStatus.SENT
    assert challenge.esp_message_id == postmark_api.message_ids[-1]
    return challenge


def issue_as_mailgun_would(capture: Capture, mailoutbox: list[EmailMessage], user: Any, message_id: str) -> Challenge:
    """Issue and send a code; record the message id the way anymail stores Mailgun's answer ("<...@domain>")."""
    with capture(execute=True):
        challenge = issue_challenge(user=user, purpose="login")
    assert mailoutbox[-1].to == [user.email]
    Challenge.objects.filter(pk=challenge.pk).update(esp_message_id=message_id)
    challenge.refresh_from_db()
    return challenge


def tracking_rows(challenge: Challenge) -> list[tuple[str, str, str, dict[str, Any]]]:
    events = AuditEvent.objects.filter(challenge_id=challenge.pk, event="delivery_status").order_by("id")
    return [(event.outcome, event.reason, event.email_pseudonym, event.data) for event in events]


def assert_no_raw_address() -> None:
    for event in AuditEvent.objects.all():
        assert ADDRESS not in json.dumps(event.data).lower()
        assert "@" not in event.email_pseudonym


# ---------------------------------------------------------------------------------------------------------------
# Postmark: basic auth, one JSON record per POST


def postmark_metadata(challenge: Challenge) -> dict[str, str]:
    """Postmark echoes the message's Metadata (what delivery.build_message set) in every webhook."""
    return {"emailotp_challenge": str(challenge.pk), "emailotp_purpose": challenge.purpose}


def postmark_delivery(challenge: Challenge) -> dict[str, Any]:
    return {
        "RecordType": "Delivery",
        "ServerID": 23,
        "MessageStream": "outbound",
        "MessageID": challenge.esp_message_id,
        "Recipient": ADDRESS,
        "Tag": "emailotp",
        "DeliveredAt": "2026-03-02T09:00:07.1234567Z",
        "Details": "smtp;250 2.0.0 OK  1772442007 a1b2c3d4e5-6f7g.8 - gsmtp",
        "Metadata": postmark_metadata(challenge),
    }


def postmark_bounce(challenge: Challenge, bounce_type: str, type_code: int, description: str) -> dict[str, Any]:
    return {
        "RecordType": "Bounce",
        "ID": 4323372036854775807,
        "Type": bounce_type,
        "TypeCode": type_code,
        "Name": bounce_type,
        "Tag": "emailotp",
        "MessageID": challenge.esp_message_id,
        "Metadata": postmark_metadata(challenge),
        "ServerID": 23,
        "MessageStream": "outbound",
        "Description": description,
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": ADDRESS,
        "From": "no-reply@example.com",
        "BouncedAt": "2026-03-02T09:00:07Z",
        "DumpAvailable": True,
        "Inactive": bounce_type == "HardBounce",
        "CanActivate": True,
        "Subject": "Your Example verification code",
    }


def post_json(client: Client, url: str, payload: dict[str, Any]) -> int:
    return client.post(url, data=json.dumps(payload), content_type="application/json").status_code


def test_postmark_delivery_marks_the_challenge_delivered(
    user: Any,
    webhook_client: Client,
    django_capture_on_commit_callbacks: Capture,
    postmark_api: FakePostmark,
    status_signals: list[dict[str, Any]],
) -> None:
    challenge = issue_through_postmark(django_capture_on_commit_callbacks, postmark_api, user)

    assert post_json(webhook_client, POSTMARK_URL, postmark_delivery(challenge)) == 200

    challenge.refresh_from_db()
    assert challenge.delivery_status == DeliveryStatus.DELIVERED
    assert list(
        AuditEvent.objects.filter(challenge_id=challenge.pk).order_by("id").values_list("event", flat=True)
    ) == [
        "challenge_issued",
        "challenge_sent",
        "delivery_status",
    ]
    event = AuditEvent.objects.get(event="delivery_status")
    assert (event.outcome, event.reason, event.user_id, event.purpose) == ("success", "delivered", user.pk, "login")
    assert event.email_pseudonym == email_pseudonym(ADDRESS)
    assert event.data == {
        "esp": "Postmark",
        "event": "delivered",
        "description": "",
        "esp_timestamp": "2026-03-02T09:00:07.123456+00:00",
    }
    assert [(s["sender"], s["challenge"].pk, s["status"], s["event"], s["esp_name"]) for s in status_signals] == [
        (Challenge, challenge.pk, DeliveryStatus.DELIVERED, "delivered", "Postmark")
    ]
    assert status_signals[0]["challenge"].delivery_status == DeliveryStatus.DELIVERED
    assert_no_raw_address()


def test_postmark_hard_bounce_then_a_late_transient_keeps_bounced(
    user: Any, webhook_client: Client, django_capture_on_commit_callbacks: Capture, postmark_api: FakePostmark
) -> None:
    challenge = issue_through_postmark(django_capture_on_commit_callbacks, postmark_api, user)
    hard = postmark_bounce(
        challenge,
        "HardBounce",
        1,
        "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
    )
    transient = postmark_bounce(
        challenge,
        "Transient",
        2,
        "The server could not temporarily deliver your message (ex: Message is delayed due to network troubles).",
    )

    assert post_json(webhook_client, POSTMARK_URL, hard) == 200
    challenge.refresh_from_db()
    assert challenge.delivery_status == DeliveryStatus.BOUNCED
    # Webhooks arrive out of order: the earlier "deferred" must not undo the final bounce.
    assert post_json(webhook_client, POSTMARK_URL, transient) == 200
    challenge.refresh_from_db()
    assert challenge.delivery_status == DeliveryStatus.BOUNCED

    pseudonym = email_pseudonym(ADDRESS)
    assert tracking_rows(challenge) == [
        (
            "failure",
            "bounced",
            pseudonym,
            {
                "esp": "Postmark",
                "event": "bounced",
                "description": hard["Description"],
                "esp_timestamp": "2026-03-02T09:00:07+00:00",
            },
        ),
        (
            "info",
            "deferred",
            pseudonym,
            {
                "esp": "Postmark",
                "event": "deferred",
                "description": transient["Description"],
                "esp_timestamp": "2026-03-02T09:00:07+00:00",
                "kept_status": "bounced",
            },
        ),
    ]
    assert_no_raw_address()


@pytest.mark.parametrize(
    ("bounce_type", "type_code", "status", "outcome"),
    [
        ("SpamComplaint", 100001, "complained", "failure"),
        ("BadEmailAddress", 100000, "rejected", "failure"),
        ("SMTPApiError", 100007, "failed", "failure"),
        ("DnsError", 256, "deferred", "info"),
    ],
)
def test_postmark_bounce_types_map_to_delivery_statuses(
    user: Any,
    webhook_client: Client,
    django_capture_on_commit_callbacks: Capture,
    postmark_api: FakePostmark,
    bounce_type: str,
    type_code: int,
    status: str,
    outcome: str,
) -> None:
    challenge = issue_through_postmark(django_capture_on_commit_callbacks, postmark_api, user)
    payload = postmark_bounce(challenge, bounce_type, type_code, f"{bounce_type} reported by the receiving server.")
    if bounce_type == "SpamComplaint":
        payload["RecordType"] = "SpamComplaint"

    assert post_json(webhook_client, POSTMARK_URL, payload) == 200

    challenge.refresh_from_db()
    assert challenge.delivery_status == status
    [(row_outcome, reason, _pseudonym, data)] = tracking_rows(challenge)
    assert (row_outcome, reason, data["event"]) == (outcome, status, status)


def test_a_complaint_after_delivery_is_not_undone_by_a_repeated_delivery_webhook(
    user: Any, webhook_client: Client, django_capture_on_commit_callbacks: Capture, postmark_api: FakePostmark
) -> None:
    challenge = issue_through_postmark(django_capture_on_commit_callbacks, postmark_api, user)
    complaint = postmark_bounce(
        challenge, "SpamComplaint", 100001, "The subscriber explicitly marked this message as spam."
    )
    complaint["RecordType"] = "SpamComplaint"

    for payload in (postmark_delivery(challenge), complaint, postmark_delivery(challenge)):
        assert post_json(webhook_client, POSTMARK_URL, payload) == 200

    challenge.refresh_from_db()
    assert challenge.delivery_status == DeliveryStatus.COMPLAINED
    assert [(outcome, reason, data.get("kept_status")) for outcome, reason, _p, data in tracking_rows(challenge)] == [
        ("success", "delivered", None),
        ("failure", "complained", None),
        ("success", "delivered", "complained"),
    ]


def test_postmark_without_the_webhook_credentials_is_refused_and_writes_nothing(
    user: Any, django_capture_on_commit_callbacks: Capture, postmark_api: FakePostmark
) -> None:
    challenge = issue_through_postmark(django_capture_on_commit_callbacks, postmark_api, user)
    before = AuditEvent.objects.count()
    wrong = base64.b64encode(b"anymail-webhook:guessed").decode()

    assert post_json(Client(), POSTMARK_URL, postmark_delivery(challenge)) == 400
    assert post_json(Client(HTTP_AUTHORIZATION=f"Basic {wrong}"), POSTMARK_URL, postmark_delivery(challenge)) == 400

    challenge.refresh_from_db()
    assert challenge.delivery_status == DeliveryStatus.SENT
    assert AuditEvent.objects.count() == before


# ---------------------------------------------------------------------------------------------------------------
# Mailgun: signed JSON webhooks ("signature" block plus "event-data")

MAILGUN_ID = "20260302090000.1.4C1F2E3D5A6B7C8D@mg.example.com"


def mailgun_signed(event_data: dict[str, Any], key: str = MAILGUN_SIGNING_KEY) -> dict[str, Any]:
    """Mailgun's webhook body: HMAC-SHA256 over timestamp + token with the webhook signing key."""
    timestamp, token = str(int(time.time())), uuid.uuid4().hex + uuid.uuid4().hex[:18]
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return {"signature": {"timestamp": timestamp, "token": token, "signature": signature}, "event-data": event_data}


def mailgun_event(event: str, message_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": uuid.uuid4().hex[:22],
        "event": event,
        "timestamp": EVENT_TIME.timestamp(),
        "log-level": "info" if event == "delivered" else "error",
        "recipient": ADDRESS,
        "recipient-domain": "example.com",
        "tags": ["emailotp"],
        "user-variables": {},
        "envelope": {"sender": "no-reply@example.com", "transport": "smtp", "targets": ADDRESS},
        "message": {
            "headers": {
                "to": ADDRESS,
                "message-id": message_id,
                "from": "Example <no-reply@example.com>",
                "subject": "Your Example verification code",
            },
            "attachments": [],
            "size": 4096,
        },
        **fields,
    }


def test_mailgun_delivered_and_permanent_failure(
    user: Any,
    other_user: Any,
    webhook_client: Client,
    django_capture_on_commit_callbacks: Capture,
    mailoutbox: list[EmailMessage],
) -> None:
    delivered = issue_as_mailgun_would(django_capture_on_commit_callbacks, mailoutbox, user, f"<{MAILGUN_ID}>")
    failed_id = "20260302090001.1.9F8E7D6C5B4A3921@mg.example.com"
    failed = issue_as_mailgun_would(django_capture_on_commit_callbacks, mailoutbox, other_user, f"<{failed_id}>")
    ok_status = {"code": 250, "message": "OK", "description": "", "attempt-no": 1, "tls": True}
    bounce_status = {
        "code": 550,
        "attempt-no": 1,
        "message": "5.1.1 The email account that you tried to reach does not exist.",
        "description": "Not delivered to BOB@example.com: mailbox unavailable",
    }
    permanent = mailgun_event(
        "failed", failed_id, severity="permanent", reason="bounce", **{"delivery-status": bounce_status}
    )
    permanent["recipient"] = "bob@example.com"

    delivered_event = mailgun_event("delivered", MAILGUN_ID, **{"delivery-status": ok_status})
    assert post_json(webhook_client, MAILGUN_URL, mailgun_signed(delivered_event)) == 200
    assert post_json(webhook_client, MAILGUN_URL, mailgun_signed(permanent)) == 200

    delivered.refresh_from_db()
    failed.refresh_from_db()
    assert (delivered.delivery_status, failed.delivery_status) == (DeliveryStatus.DELIVERED, DeliveryStatus.BOUNCED)
    esp_timestamp = EVENT_TIME.isoformat()
    assert tracking_rows(delivered) == [
        (
            "success",
            "delivered",
            email_pseudonym(ADDRESS),
            {"esp": "Mailgun", "event": "delivered", "description": "", "esp_timestamp": esp_timestamp},
        )
    ]
    assert tracking_rows(failed) == [
        (
            "failure",
            "bounced",
            email_pseudonym("bob@example.com"),
            {
                "esp": "Mailgun",
                "event": "bounced",
                # The ESP's text quoted the address: the audit trail keeps the text, not the address.
                "description": "Not delivered to [recipient]: mailbox unavailable",
                "esp_timestamp": esp_timestamp,
            },
        )
    ]
    assert not AuditEvent.objects.filter(data__description__icontains="bob@example.com").exists()


def test_mailgun_temporary_failure_is_deferred_until_delivered(
    user: Any, webhook_client: Client, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    challenge = issue_as_mailgun_would(django_capture_on_commit_callbacks, mailoutbox, user, f"<{MAILGUN_ID}>")
    greylisted = mailgun_event(
        "failed",
        MAILGUN_ID,
        severity="temporary",
        reason="greylisted",
        **{"delivery-status": {"code": 450, "description": "Recipient address rejected: Greylisted"}},
    )

    assert post_json(webhook_client, MAILGUN_URL, mailgun_signed(greylisted)) == 200
    challenge.refresh_from_db()
    assert challenge.delivery_status == DeliveryStatus.DEFERRED
    assert post_json(webhook_client, MAILGUN_URL, mailgun_signed(mailgun_event("delivered", MAILGUN_ID))) == 200
    challenge.refresh_from_db()
    assert challenge.delivery_status == DeliveryStatus.DELIVERED
    assert [(outcome, reason) for outcome, reason, _p, _d in tracking_rows(challenge)] == [
        ("info", "deferred"),
        ("success", "delivered"),
    ]


def test_mailgun_with_a_wrong_signature_is_refused_and_writes_nothing(
    user: Any, webhook_client: Client, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    challenge = issue_as_mailgun_would(django_capture_on_commit_callbacks, mailoutbox, user, f"<{MAILGUN_ID}>")
    before = AuditEvent.objects.count()
    forged = mailgun_signed(mailgun_event("delivered", MAILGUN_ID), key="key-guessed-by-an-attacker")
    tampered = mailgun_signed(mailgun_event("delivered", MAILGUN_ID))
    tampered["signature"]["timestamp"] = str(int(tampered["signature"]["timestamp"]) + 1)

    assert post_json(webhook_client, MAILGUN_URL, forged) == 400
    assert post_json(webhook_client, MAILGUN_URL, tampered) == 400
    # The signature alone is not enough either when the project also set the basic-auth secret.
    assert post_json(Client(), MAILGUN_URL, mailgun_signed(mailgun_event("delivered", MAILGUN_ID))) == 400

    challenge.refresh_from_db()
    assert challenge.delivery_status == DeliveryStatus.SENT
    assert AuditEvent.objects.count() == before


def test_the_challenge_is_found_by_metadata_when_the_message_id_is_unknown(
    user: Any, webhook_client: Client, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    """An SMTP relay or a backend that returned no id leaves esp_message_id empty; the metadata still matches."""
    challenge = issue_as_mailgun_would(django_capture_on_commit_callbacks, mailoutbox, user, "")
    event = mailgun_event("delivered", "20260302090002.1.0A0B0C0D0E0F1011@mg.example.com")
    event["user-variables"] = {"emailotp_challenge": str(challenge.pk), "emailotp_purpose": "login"}

    assert post_json(webhook_client, MAILGUN_URL, mailgun_signed(event)) == 200

    challenge.refresh_from_db()
    assert challenge.delivery_status == DeliveryStatus.DELIVERED
    assert [reason for _o, reason, _p, _d in tracking_rows(challenge)] == ["delivered"]


def test_events_for_other_messages_and_engagement_events_are_ignored(
    user: Any,
    webhook_client: Client,
    django_capture_on_commit_callbacks: Capture,
    mailoutbox: list[EmailMessage],
    status_signals: list[dict[str, Any]],
) -> None:
    challenge = issue_as_mailgun_would(django_capture_on_commit_callbacks, mailoutbox, user, f"<{MAILGUN_ID}>")
    before = AuditEvent.objects.count()
    newsletter = mailgun_event("failed", "20260302090003.1.AAAAAAAAAAAAAAAA@mg.example.com", severity="permanent")
    newsletter["user-variables"] = {"emailotp_challenge": "not-a-uuid"}
    opened = mailgun_event("opened", MAILGUN_ID)

    assert post_json(webhook_client, MAILGUN_URL, mailgun_signed(newsletter)) == 200
    assert post_json(webhook_client, MAILGUN_URL, mailgun_signed(opened)) == 200

    challenge.refresh_from_db()
    assert challenge.delivery_status == DeliveryStatus.SENT
    assert AuditEvent.objects.count() == before
    assert status_signals == []
