"""The admin screens, through the admin: a superuser, staff with and without permissions, and a non-staff user.

Audit events, challenges and step-up grants are read-only for everyone; lockouts can only be lifted (through
services.lift_lockout, audited with the admin's name); no hash is ever on a page; the activity page shows exact counts.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.contrib.sessions.middleware import SessionMiddleware
from django.core import mail
from django.http import HttpRequest, HttpResponse
from django.test import Client, RequestFactory
from django.urls import reverse

from django_emailotp import services
from django_emailotp.crypto import email_pseudonym
from django_emailotp.models import (
    AuditEvent,
    AuditEventType,
    AuditOutcome,
    Challenge,
    ChallengeStatus,
    DeliveryStatus,
    Lockout,
    StepUpGrant,
)
from tests.conftest import code_from
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2025, 3, 30, 15, 0, tzinfo=UTC)
ACTIVITY = "/admin/emailotp/auditevent/activity/"
AUDIT = "/admin/emailotp/auditevent/"
CHALLENGES = "/admin/emailotp/challenge/"
LOCKOUTS = "/admin/emailotp/lockout/"
GRANTS = "/admin/emailotp/stepupgrant/"


# ---------------------------------------------------------------------------------------------------------------
# Helpers and fixtures


def at(day: int, hour: int = 12, *args: int) -> datetime:
    return datetime(2025, 3, day, hour, *args, tzinfo=UTC)


def event(kind: AuditEventType, when: datetime, outcome: AuditOutcome = AuditOutcome.FAILURE, **fields: Any) -> Any:
    return AuditEvent.objects.create(event=kind, outcome=outcome, created_at=when, **fields)


def staff(username: str, *permissions: str, is_staff: bool = True) -> Any:
    user = UserFactory(username=username, is_staff=is_staff)
    user.user_permissions.set(
        [Permission.objects.get(content_type__app_label="emailotp", codename=codename) for codename in permissions]
    )
    return user


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def html(response: HttpResponse) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def result_list(response: HttpResponse) -> list[Any]:
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def action_choices(response: HttpResponse) -> list[str]:
    form = response.context["action_form"]
    return [] if form is None else [name for name, _label in form.fields["action"].choices if name]


def run_action(client: Client, url: str, action: str, *objects: Any) -> HttpResponse:
    return client.post(url, {"action": action, "_selected_action": [obj.pk for obj in objects], "index": 0})


def message_texts(response: HttpResponse) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


class _Tables(HTMLParser):
    """The text of every cell of the table with a given id, row by row."""

    def __init__(self, table_id: str) -> None:
        super().__init__()
        self.table_id, self.inside, self.rows, self.cell = table_id, False, [], None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table" and ("id", self.table_id) in attrs:
            self.inside = True
        elif self.inside and tag == "tr":
            self.rows.append([])
        elif self.inside and tag in ("td", "th"):
            self.cell = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.inside = False
        elif self.inside and tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(" ".join(self.cell.split()))
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell += data


def table(page: str, table_id: str) -> list[list[str]]:
    parser = _Tables(table_id)
    parser.feed(page)
    assert parser.rows, f"no table #{table_id}"
    return parser.rows


@pytest.fixture(autouse=True)
def _admin_without_step_up(settings: Any) -> None:
    # The example site puts the whole admin behind step-up (tests/test_step_up_* cover that); these tests are about
    # the admin screens themselves.
    settings.EMAIL_OTP_PROTECTED_URLS = []


@pytest.fixture
def superuser(admin_user: Any) -> Any:
    return admin_user


@pytest.fixture
def auditor(db: None) -> Any:
    return staff("auditor", "view_auditevent")


def session_request(user: Any) -> HttpRequest:
    """A signed-in POST with a session, as the engine sees it behind SessionMiddleware."""
    request = RequestFactory().post("/otp/", REMOTE_ADDR="203.0.113.7", HTTP_USER_AGENT="pytest-agent/1.0")
    SessionMiddleware(lambda _request: HttpResponse()).process_request(request)
    request.user = user
    return request


def locked(user: Any, *, minutes: int = 15, lock_count: int = 1, scope: str = "step_up") -> Lockout:
    lockout, _created = Lockout.objects.update_or_create(
        user=user,
        scope=scope,
        defaults={
            "consecutive_failures": 0,
            "lock_count": lock_count,
            "locked_until": NOW + timedelta(minutes=minutes),
            "last_failure_at": NOW - timedelta(seconds=5),
        },
    )
    return lockout


# ---------------------------------------------------------------------------------------------------------------
# Every page, and no secret on any of them


@pytest.fixture
def engine_rows(
    user: Any, django_capture_on_commit_callbacks: Any, mailoutbox: list[mail.EmailMessage]
) -> dict[str, Any]:
    """Rows the engine wrote for real: a pending login code (hash stored), a step-up code verified after one wrong
    guess with its grant, all bound to a session, and a lockout."""
    request = session_request(user)
    with django_capture_on_commit_callbacks(execute=True):
        pending = services.issue_challenge(user=user, purpose="login", request=request)
    with django_capture_on_commit_callbacks(execute=True):
        step_up = services.issue_challenge(user=user, purpose="step_up", request=request)
    code = code_from(mailoutbox[-1])
    wrong = f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"
    assert not services.verify_challenge(step_up.pk, wrong, request=request)
    assert services.complete_step_up(step_up.pk, code, request=request)
    pending.refresh_from_db()
    step_up.refresh_from_db()
    grant = StepUpGrant.objects.get(user=user)
    lockout = locked(user)
    return {"pending": pending, "step_up": step_up, "grant": grant, "lockout": lockout}


def admin_pages(rows: dict[str, Any]) -> list[str]:
    audit_row = AuditEvent.objects.filter(event=AuditEventType.VERIFY_FAILED).get()
    return [
        "/admin/",
        "/admin/emailotp/",
        ACTIVITY,
        AUDIT,
        f"{AUDIT}?q=alice",
        f"{AUDIT}?event__exact=verify_failed",
        f"{AUDIT}?created_at__year=2025",
        f"{AUDIT}{audit_row.pk}/change/",
        CHALLENGES,
        f"{CHALLENGES}?status__exact=pending",
        f"{CHALLENGES}{rows['pending'].pk}/change/",
        f"{CHALLENGES}{rows['step_up'].pk}/change/",
        LOCKOUTS,
        f"{LOCKOUTS}?state=active",
        f"{LOCKOUTS}{rows['lockout'].pk}/change/",
        GRANTS,
        f"{GRANTS}{rows['grant'].pk}/change/",
    ]


def test_no_hash_on_any_admin_page(superuser: Any, engine_rows: dict[str, Any]) -> None:
    pending, grant = engine_rows["pending"], engine_rows["grant"]
    assert len(pending.code_hash) == 64
    assert len(pending.binding) == 64
    assert len(grant.auth_hash) == 64
    session_hashes = set(AuditEvent.objects.exclude(session_hash="").values_list("session_hash", flat=True))
    assert session_hashes == {pending.binding}
    secrets = {pending.code_hash, pending.binding, grant.binding, grant.auth_hash}
    client = client_for(superuser)

    for url in admin_pages(engine_rows):
        page = html(client.get(url))
        assert [secret for secret in secrets if secret in page] == [], url

    # Only a prefix of the session hash is shown, to follow one session through the trail.
    audit_row = AuditEvent.objects.filter(event=AuditEventType.VERIFY_FAILED).get()
    assert pending.binding[:12] in html(client.get(f"{AUDIT}{audit_row.pk}/change/"))


def test_the_app_index_links_to_the_activity_page(superuser: Any, db: None) -> None:
    page = html(client_for(superuser).get("/admin/emailotp/"))
    assert f'<a href="{ACTIVITY}">Activity, last 30 days</a>' in page
    assert reverse("admin:emailotp_activity") == ACTIVITY
    assert f'<a href="{ACTIVITY}">Activity, last 30 days</a>' in html(client_for(superuser).get(AUDIT))


# ---------------------------------------------------------------------------------------------------------------
# Audit events


def test_audit_events_are_read_only_even_for_a_superuser(superuser: Any, user: Any) -> None:
    row = event(
        AuditEventType.VERIFY_FAILED,
        at(10),
        user=user,
        reason="invalid_code",
        ip_address="203.0.113.7",
        data={"retry_after": 42},
    )
    client = client_for(superuser)

    assert client.get(f"{AUDIT}add/").status_code == 403
    assert client.post(f"{AUDIT}{row.pk}/change/", {"event": "verify_succeeded", "outcome": "success"}).status_code == (
        403
    )
    assert client.get(f"{AUDIT}{row.pk}/delete/").status_code == 403
    assert client.post(f"{AUDIT}{row.pk}/delete/", {"post": "yes"}).status_code == 403

    changelist = client.get(AUDIT)
    assert action_choices(changelist) == ["export_csv"]
    response = run_action(client, AUDIT, "delete_selected", row)
    assert response.status_code == 302
    assert message_texts(response) == ["No action selected."]

    page = html(client.get(f"{AUDIT}{row.pk}/change/"))
    assert 'name="_save"' not in page
    assert [name for name in ('name="event"', 'name="outcome"', 'name="user_agent"', "<textarea") if name in page] == []
    assert '<div class="readonly">2025-03-10 12:00:00 UTC</div>' in page
    assert '<div class="readonly">invalid_code</div>' in page
    assert '<div class="readonly"><pre>{\n  &quot;retry_after&quot;: 42\n}</pre></div>' in page
    row.refresh_from_db()
    assert (row.event, row.outcome) == ("verify_failed", "failure")
    assert AuditEvent.objects.count() == 1


def test_audit_list_links_the_user_and_the_challenge_while_it_exists(superuser: Any, user: Any) -> None:
    challenge = Challenge.objects.create(
        user=user, email=user.email, purpose="login", created_at=at(10), expires_at=at(10, 12, 5), max_attempts=5
    )
    purged_id = uuid.UUID("00000000-0000-4000-8000-000000000001")
    event(
        AuditEventType.CHALLENGE_ISSUED,
        at(10),
        AuditOutcome.SUCCESS,
        user=user,
        purpose="login",
        challenge_id=challenge.pk,
        email_pseudonym=email_pseudonym(user.email),
        ip_address="203.0.113.7",
    )
    event(AuditEventType.VERIFY_FAILED, at(9), reason="not_found", challenge_id=purged_id)

    page = html(client_for(superuser).get(AUDIT))

    assert f'<a href="{CHALLENGES}{challenge.pk}/change/">{challenge.pk}</a>' in page
    assert f'<td class="field-challenge">{purged_id}</td>' in page
    assert f'<a href="/admin/auth/user/{user.pk}/change/">alice</a>' in page
    assert "2025-03-10 12:00:00 UTC" in page
    assert email_pseudonym(user.email) in page
    assert "alice@example.com" not in page
    assert "203.0.113.7" in page


def test_audit_filters_date_hierarchy_and_search(superuser: Any, user: Any, other_user: Any) -> None:
    alice_issued = event(
        AuditEventType.CHALLENGE_ISSUED,
        at(10),
        AuditOutcome.SUCCESS,
        user=user,
        purpose="login",
        email_pseudonym=email_pseudonym("alice@example.com"),
        ip_address="203.0.113.7",
    )
    alice_failed = event(
        AuditEventType.VERIFY_FAILED,
        at(11),
        user=user,
        purpose="login",
        reason="invalid_code",
        ip_address="203.0.113.7",
    )
    bob_failed = event(
        AuditEventType.VERIFY_FAILED, at(12), user=other_user, purpose="step_up", ip_address="2001:db8::5"
    )
    client = client_for(superuser)

    def listed(query: str) -> list[Any]:
        return result_list(client.get(f"{AUDIT}?{query}"))

    assert listed("") == [bob_failed, alice_failed, alice_issued]
    assert listed("event__exact=verify_failed") == [bob_failed, alice_failed]
    assert listed("purpose=step_up") == [bob_failed]
    assert listed("outcome__exact=success") == [alice_issued]
    assert listed("created_at__gte=2025-03-11+00:00:00%2B00:00&created_at__lt=2025-03-12+00:00:00%2B00:00") == [
        alice_failed
    ]
    assert listed("created_at__year=2025&created_at__month=3&created_at__day=12") == [bob_failed]
    assert listed("q=alice") == [alice_failed, alice_issued]  # username
    assert listed("q=bob%40example.com") == [bob_failed]  # email
    assert listed(f"q={email_pseudonym('alice@example.com')}") == [alice_issued]
    assert listed("q=2001:db8::5") == [bob_failed]
    assert listed("q=203.0.113.7") == [alice_failed, alice_issued]


def test_csv_export_has_utc_times_of_day_and_escapes_formulas(superuser: Any, user: Any) -> None:
    mallory = UserFactory(username="@mallory", email="mallory@example.com")
    challenge_id = uuid.UUID("5b0c5c5e-7a77-4d3f-9a43-2f0f3b1f0e11")
    first = event(
        AuditEventType.VERIFY_FAILED,
        at(10, 9, 8, 7, 123456),
        user=user,
        purpose="login",
        reason="invalid_code",
        challenge_id=challenge_id,
        email_pseudonym="0123456789abcdef01234567",
        session_hash="ab" * 32,
        ip_address="203.0.113.7",
        user_agent='=HYPERLINK("http://evil.example/","click")',
    )
    second = event(
        AuditEventType.DELIVERY_FAILED,
        at(10, 23, 59, 59),
        user=mallory,
        purpose="step_up",
        reason="permanent",
        ip_address="2001:db8::1",
        user_agent="-2+3",
        data={"error": "@SUM(1)"},
    )
    third = event(AuditEventType.RATE_LIMITED, at(11, 0), reason="+send_per_ip", user_agent="\tcmd|/c calc")
    event(AuditEventType.CHALLENGE_ISSUED, at(10), AuditOutcome.SUCCESS)  # not selected: not exported

    with time_machine.travel(NOW, tick=False):
        response = run_action(client_for(superuser), AUDIT, "export_csv", third, first, second)

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="emailotp-audit-20250330T150000Z.csv"'
    body = b"".join(response.streaming_content).decode()
    assert body == (
        "time_utc,event,outcome,reason,user_id,user,purpose,challenge_id,email_pseudonym,session,ip_address,"
        "user_agent,data\r\n"
        f"2025-03-10T09:08:07.123456Z,verify_failed,failure,invalid_code,{user.pk},alice,login,{challenge_id},"
        "0123456789abcdef01234567,abababababab,203.0.113.7,"
        '"\'=HYPERLINK(""http://evil.example/"",""click"")",\r\n'
        f"2025-03-10T23:59:59.000000Z,delivery_failed,failure,permanent,{mallory.pk},'@mallory,step_up,,,,2001:db8::1,"
        '\'-2+3,"{""error"": ""@SUM(1)""}"\r\n'
        "2025-03-11T00:00:00.000000Z,rate_limited,failure,'+send_per_ip,,,,,,,,'\tcmd|/c calc,\r\n"
    )


def test_csv_export_across_all_selected_rows(auditor: Any) -> None:
    events = [event(AuditEventType.CHALLENGE_ISSUED, at(day), AuditOutcome.SUCCESS) for day in (3, 1, 2)]

    response = client_for(auditor).post(
        AUDIT, {"action": "export_csv", "select_across": "1", "index": 0, "_selected_action": [events[0].pk]}
    )

    lines = b"".join(response.streaming_content).decode().splitlines()
    assert [line.split(",")[0] for line in lines] == [
        "time_utc",
        "2025-03-01T12:00:00.000000Z",
        "2025-03-02T12:00:00.000000Z",
        "2025-03-03T12:00:00.000000Z",
    ]


def test_users_without_an_admin_are_named_not_linked(superuser: Any, user: Any, monkeypatch: Any) -> None:
    from django.contrib import admin
    from django.contrib.auth import get_user_model

    event(AuditEventType.CHALLENGE_ISSUED, at(10), AuditOutcome.SUCCESS, user=user)
    monkeypatch.delitem(admin.site._registry, get_user_model())

    assert '<td class="field-user_column">alice</td>' in html(client_for(superuser).get(AUDIT))


# ---------------------------------------------------------------------------------------------------------------
# Permissions


def test_non_staff_and_anonymous_users_are_sent_to_the_admin_login(user: Any) -> None:
    visitor = UserFactory(username="mallory")
    for client in (Client(), client_for(visitor)):
        for url in (ACTIVITY, AUDIT, CHALLENGES, LOCKOUTS):
            response = client.get(url)
            assert response.status_code == 302, url
            assert response["Location"] == f"/admin/login/?next={url}"


def test_staff_without_permissions_is_refused(user: Any) -> None:
    lockout = locked(user)
    client = client_for(staff("intern"))

    for url in (ACTIVITY, AUDIT, CHALLENGES, LOCKOUTS, GRANTS):
        assert client.get(url).status_code == 403, url
    assert client.get("/admin/emailotp/").status_code == 404
    assert run_action(client, LOCKOUTS, "unlock_selected", lockout).status_code == 403
    assert run_action(client, AUDIT, "export_csv").status_code == 403
    lockout.refresh_from_db()
    assert lockout.locked_until == NOW + timedelta(minutes=15)


def test_the_audit_view_permission_opens_the_trail_and_the_activity_page_only(auditor: Any) -> None:
    event(AuditEventType.CHALLENGE_ISSUED, at(10), AuditOutcome.SUCCESS)
    client = client_for(auditor)

    assert client.get(ACTIVITY).status_code == 200
    assert action_choices(client.get(AUDIT)) == ["export_csv"]
    assert client.get(CHALLENGES).status_code == 403
    assert client.get(LOCKOUTS).status_code == 403
    assert f'<a href="{ACTIVITY}">' in html(client.get("/admin/emailotp/"))

    lockout_viewer = client_for(staff("helpdesk", "view_lockout"))
    assert lockout_viewer.get(ACTIVITY).status_code == 403
    assert f'<a href="{ACTIVITY}">' not in html(lockout_viewer.get("/admin/emailotp/"))


# ---------------------------------------------------------------------------------------------------------------
# Challenges


def test_challenges_are_read_only_with_status_in_words_and_colour(superuser: Any, user: Any) -> None:
    verified = Challenge.objects.create(
        user=user,
        email=user.email,
        purpose="login",
        created_at=at(10),
        expires_at=at(10, 12, 5),
        consumed_at=at(10, 12, 1),
        status=ChallengeStatus.VERIFIED,
        attempts=2,
        max_attempts=5,
        delivery_status=DeliveryStatus.BOUNCED,
        esp_message_id="esp-1234",
    )
    burned = Challenge.objects.create(
        user=user,
        email=user.email,
        purpose="step_up",
        created_at=at(11),
        expires_at=at(11, 12, 5),
        status=ChallengeStatus.BURNED,
        attempts=5,
        max_attempts=5,
        delivery_status=DeliveryStatus.SENT,
    )
    client = client_for(superuser)

    page = html(client.get(CHALLENGES))
    assert '<span class="emailotp-badge emailotp-badge--ok"><span aria-hidden="true">✓</span> verified</span>' in page
    assert '<span class="emailotp-badge emailotp-badge--error"><span aria-hidden="true">✗</span> bounced</span>' in page
    assert (
        '<span class="emailotp-badge emailotp-badge--error"><span aria-hidden="true">✗</span> '
        "burned after too many attempts</span>"
    ) in page
    assert '<td class="field-attempts_used">2/5</td>' in page
    assert '<td class="field-attempts_used">5/5</td>' in page
    assert '<td class="field-consumed">2025-03-10 12:01:00 UTC</td>' in page
    assert '<td class="field-esp_message_id">esp-1234</td>' in page
    assert action_choices(client.get(CHALLENGES)) == []

    assert result_list(client.get(f"{CHALLENGES}?status__exact=burned")) == [burned]
    assert result_list(client.get(f"{CHALLENGES}?delivery_status__exact=bounced")) == [verified]
    assert result_list(client.get(f"{CHALLENGES}?purpose=step_up")) == [burned]
    assert result_list(client.get(f"{CHALLENGES}?q=esp-1234")) == [verified]
    assert result_list(client.get(f"{CHALLENGES}?q=alice%40example.com")) == [burned, verified]

    detail = html(client.get(f"{CHALLENGES}{verified.pk}/change/"))
    assert f'<a href="{AUDIT}?challenge_id={verified.pk}">Audit events of this challenge</a>' in detail
    assert 'name="_save"' not in detail
    assert client.get(f"{CHALLENGES}add/").status_code == 403
    assert client.post(f"{CHALLENGES}{verified.pk}/change/", {"status": "pending"}).status_code == 403
    assert client.post(f"{CHALLENGES}{verified.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Challenge.objects.count() == 2


@time_machine.travel(NOW, tick=False)
def test_the_stuck_or_failed_delivery_filter_and_the_last_error(superuser: Any, user: Any) -> None:
    def challenge(delivery: str, *, minutes_left: int = 4, deadline: int | None = None, **fields: Any) -> Challenge:
        return Challenge.objects.create(
            user=None,
            email=f"{uuid.uuid4().hex[:8]}@example.com",
            purpose="step_up",
            created_at=NOW + timedelta(minutes=minutes_left - 5),
            expires_at=NOW + timedelta(minutes=minutes_left),
            max_attempts=5,
            delivery_status=delivery,
            delivery_deadline=None if deadline is None else NOW + timedelta(seconds=deadline),
            **fields,
        )

    stuck = challenge(
        DeliveryStatus.RETRYING, deadline=-5, delivery_attempts=2, delivery_error="SMTPServerDisconnected"
    )
    challenge(DeliveryStatus.QUEUED, deadline=30)  # its lease still runs: not stuck yet
    lost = challenge(DeliveryStatus.QUEUED, minutes_left=-1, deadline=-90, delivery_attempts=1)
    failed = challenge(DeliveryStatus.FAILED, delivery_attempts=6, delivery_error="ConnectionRefusedError")
    bounced = challenge(DeliveryStatus.BOUNCED, sent_at=NOW - timedelta(seconds=50))
    challenge(DeliveryStatus.SENT, sent_at=NOW - timedelta(seconds=50))
    client = client_for(superuser)

    assert result_list(client.get(f"{CHALLENGES}?delivery_problem=stuck")) == [stuck]
    assert result_list(client.get(f"{CHALLENGES}?delivery_problem=lost")) == [lost]
    assert sorted(result_list(client.get(f"{CHALLENGES}?delivery_problem=failed")), key=str) == sorted(
        [failed, bounced], key=str
    )
    assert len(result_list(client.get(CHALLENGES))) == 6
    page = html(client.get(CHALLENGES))
    assert "By stuck or failed delivery" in page
    assert '<td class="field-delivery_error">ConnectionRefusedError</td>' in page
    detail = html(client.get(f"{CHALLENGES}{stuck.pk}/change/"))
    assert "SMTPServerDisconnected" in detail
    assert "2025-03-30 14:59:55 UTC" in detail  # the deadline the sweep acts on


def test_the_challenge_link_in_the_trail_filters_its_events(superuser: Any) -> None:
    challenge_id = uuid.uuid4()
    mine = event(AuditEventType.CHALLENGE_ISSUED, at(10), AuditOutcome.SUCCESS, challenge_id=challenge_id)
    event(AuditEventType.CHALLENGE_ISSUED, at(10), AuditOutcome.SUCCESS, challenge_id=uuid.uuid4())

    assert result_list(client_for(superuser).get(f"{AUDIT}?challenge_id={challenge_id}")) == [mine]


# ---------------------------------------------------------------------------------------------------------------
# Lockouts


@time_machine.travel(NOW, tick=False)
def test_unlock_selected_lifts_through_services_and_records_the_admin(superuser: Any, user: Any) -> None:
    lockout = locked(user, lock_count=2)
    expired = Lockout.objects.create(user=UserFactory(username="carol"), lock_count=1, locked_until=NOW)
    client = client_for(superuser)
    assert action_choices(client.get(LOCKOUTS)) == ["unlock_selected", "unlock_every_path"]

    response = run_action(client, LOCKOUTS, "unlock_selected", lockout, expired)

    assert response.status_code == 302
    assert message_texts(response) == ["Lifted 1 lockout.", "1 selected user was not locked out."]
    lockout.refresh_from_db()
    assert (lockout.locked_until, lockout.unlocked_at, lockout.unlocked_by) == (NOW, NOW, superuser)
    assert (lockout.consecutive_failures, lockout.lock_count) == (0, 0)
    expired.refresh_from_db()
    assert (expired.unlocked_at, expired.lock_count) == (None, 1)
    lifted = AuditEvent.objects.get()
    assert (lifted.event, lifted.outcome, lifted.user, lifted.created_at) == ("lockout_lifted", "success", user, NOW)
    assert lifted.data == {"by": "admin", "by_id": superuser.pk, "scope": "step_up"}
    assert lifted.ip_address == "127.0.0.1"

    page = html(client.get(LOCKOUTS))
    assert (
        '<span class="emailotp-badge emailotp-badge--ok"><span aria-hidden="true">✓</span> lifted by an admin</span>'
    ) in page

    # Lifting again changes nothing and says so.
    again = run_action(client, LOCKOUTS, "unlock_selected", lockout)
    assert message_texts(again) == ["1 selected user was not locked out."]
    assert AuditEvent.objects.count() == 1


@time_machine.travel(NOW, tick=False)
def test_lockouts_list_their_path_and_unlock_one_path_or_every_path(superuser: Any, user: Any) -> None:
    step_up = locked(user)
    login = locked(user, scope="login")
    sign_in = locked(user, scope="sign_in")
    client = client_for(superuser)
    page = html(client.get(LOCKOUTS))
    for label in ("step-up and email verification (signed in)", "second factor after the password"):
        assert label in page
    assert html(client.get(LOCKOUTS, {"scope": "sign_in"})).count("sign-in by code (anonymous, by address)") == 2

    # One selected row lifts that path only.
    assert message_texts(run_action(client, LOCKOUTS, "unlock_selected", sign_in)) == ["Lifted 1 lockout."]
    states = {row.scope: row.is_active() for row in Lockout.objects.filter(user=user)}
    assert states == {"step_up": True, "login": True, "sign_in": False}
    client.get(LOCKOUTS)  # shows (and so consumes) the message

    # "Every path" lifts the user's other locks, whichever row was selected.
    assert message_texts(run_action(client, LOCKOUTS, "unlock_every_path", login)) == ["Lifted 1 lockout."]
    assert not any(row.is_active() for row in Lockout.objects.filter(user=user))
    lifted = AuditEvent.objects.filter(event="lockout_lifted").order_by("id")
    assert [event.data["scope"] for event in lifted] == ["sign_in", "login", "step_up"]
    step_up.refresh_from_db()
    assert step_up.unlocked_by == superuser


@time_machine.travel(NOW, tick=False)
def test_unlocking_needs_the_change_permission(user: Any) -> None:
    lockout = locked(user)
    viewer = client_for(staff("helpdesk", "view_lockout"))
    assert action_choices(viewer.get(LOCKOUTS)) == []

    response = run_action(viewer, LOCKOUTS, "unlock_selected", lockout)

    # Without any action the POST is not an action at all: the list is shown again, nothing happens.
    assert response.status_code == 200
    assert message_texts(response) == []
    lockout.refresh_from_db()
    assert lockout.locked_until == NOW + timedelta(minutes=15)
    assert not AuditEvent.objects.exists()

    operator = staff("security", "view_lockout", "change_lockout")
    run_action(client_for(operator), LOCKOUTS, "unlock_selected", lockout)
    lockout.refresh_from_db()
    assert (lockout.locked_until, lockout.unlocked_by) == (NOW, operator)
    assert AuditEvent.objects.get().data == {"by": "security", "by_id": operator.pk, "scope": "step_up"}
    # Still read-only: the row itself cannot be edited, added or deleted.
    assert client_for(operator).post(f"{LOCKOUTS}{lockout.pk}/change/", {"lock_count": 0}).status_code == 403
    assert client_for(operator).get(f"{LOCKOUTS}add/").status_code == 403


@time_machine.travel(NOW, tick=False)
def test_lockout_list_state_filter_and_time_remaining(superuser: Any, user: Any, other_user: Any) -> None:
    active = locked(user, minutes=14)
    expired = Lockout.objects.create(user=other_user, lock_count=1, locked_until=NOW - timedelta(hours=1))
    counting = Lockout.objects.create(user=UserFactory(username="carol"), consecutive_failures=3)
    client = client_for(superuser)

    assert result_list(client.get(LOCKOUTS)) == [active, expired, counting]
    assert result_list(client.get(f"{LOCKOUTS}?state=active")) == [active]
    assert result_list(client.get(f"{LOCKOUTS}?state=expired")) == [expired]
    assert result_list(client.get(f"{LOCKOUTS}?state=never")) == [counting]
    assert result_list(client.get(f"{LOCKOUTS}?q=bob")) == [expired]

    page = html(client.get(LOCKOUTS))
    assert '<td class="field-time_remaining">14\xa0minutes</td>' in page
    assert '<td class="field-locked_until_utc">2025-03-30 15:14:00 UTC</td>' in page
    assert '<span class="emailotp-badge emailotp-badge--error"><span aria-hidden="true">✗</span> locked</span>' in page
    assert '<span class="emailotp-badge emailotp-badge--quiet"><span aria-hidden="true">○</span> expired</span>' in page
    assert '<td class="field-consecutive_failures">3</td>' in page
    assert "By state" in page


def test_lockout_page_shows_the_users_recent_history(superuser: Any, user: Any, other_user: Any) -> None:
    lockout = locked(user)
    event(
        AuditEventType.VERIFY_FAILED,
        at(29, 10),
        user=user,
        purpose="login",
        reason="invalid_code",
        ip_address="203.0.113.7",
    )
    event(AuditEventType.LOCKED_OUT, at(29, 10, 1), user=user, purpose="login", ip_address="203.0.113.7")
    event(AuditEventType.VERIFY_FAILED, at(29, 11), user=other_user, purpose="login", reason="expired")

    page = html(client_for(superuser).get(f"{LOCKOUTS}{lockout.pk}/change/"))

    assert table(page, "emailotp-history")[1:] == [
        ["2025-03-29 10:01:00 UTC", "email-code path locked after wrong codes", "", "login", "203.0.113.7"],
        ["2025-03-29 10:00:00 UTC", "code rejected", "invalid_code", "login", "203.0.113.7"],
    ]
    assert f'<a href="{AUDIT}?user__id__exact={user.pk}">All audit events of this user</a>' in page
    assert 'name="_save"' not in page


# ---------------------------------------------------------------------------------------------------------------
# Step-up grants


def test_step_up_grants_are_listed_read_only(superuser: Any, user: Any) -> None:
    grant = services.grant_step_up(
        request=session_request(user), user=user, purpose="danger_zone", method="backup_code"
    )
    client = client_for(superuser)

    page = html(client.get(GRANTS))
    assert '<td class="field-purpose">danger_zone</td>' in page
    assert '<td class="field-challenge">-</td>' in page  # confirmed with a backup code, not an email code
    assert result_list(client.get(f"{GRANTS}?q=alice")) == [grant]
    assert action_choices(client.get(GRANTS)) == []
    assert client.post(f"{GRANTS}{grant.pk}/delete/", {"post": "yes"}).status_code == 403


# ---------------------------------------------------------------------------------------------------------------
# The activity page


@pytest.fixture
def activity(user: Any, other_user: Any) -> None:
    """A month of known activity: counts per day and sources of failures."""
    for hour in (9, 10, 11):
        event(AuditEventType.CHALLENGE_ISSUED, at(2, hour), AuditOutcome.SUCCESS, user=user)
    event(AuditEventType.VERIFY_SUCCEEDED, at(2, 12), AuditOutcome.SUCCESS, user=user)
    for _ in range(4):
        event(AuditEventType.VERIFY_FAILED, at(15, 8), user=other_user, ip_address="198.51.100.23")
    event(AuditEventType.LOCKED_OUT, at(15, 8), user=other_user, ip_address="198.51.100.23")
    event(AuditEventType.RATE_LIMITED, at(30, 14), ip_address="203.0.113.50")
    event(AuditEventType.DELIVERY_FAILED, at(30, 14), reason="permanent", user=user)
    event(AuditEventType.CHALLENGE_ISSUED, at(1, 0) - timedelta(seconds=1), AuditOutcome.SUCCESS)  # 31 days ago


@time_machine.travel(NOW, tick=False)
def test_activity_page_shows_the_exact_counts(superuser: Any, activity: None, other_user: Any) -> None:
    page = html(client_for(superuser).get(ACTIVITY))

    assert "The last 30 days, 2025-03-01 to 2025-03-30; days are UTC." in page
    daily = table(page, "emailotp-daily")
    assert daily[0] == [
        "Day",
        "Codes issued",
        "Codes verified",
        "Failed verifications",
        "Refused by a rate limit",
        "Lockouts",
        "Delivery failures",
    ]
    assert len(daily) == 1 + 30 + 1
    by_day = {row[0]: row[1:] for row in daily[1:]}
    assert by_day["2025-03-01"] == ["0", "0", "0", "0", "0", "0"]
    assert by_day["2025-03-02"] == ["3", "1", "0", "0", "0", "0"]
    assert by_day["2025-03-15"] == ["0", "0", "4", "0", "1", "0"]
    assert by_day["2025-03-30"] == ["0", "0", "0", "1", "0", "1"]
    assert by_day["Total"] == ["3", "1", "4", "1", "1", "1"]
    assert sum(int(count) for day, row in by_day.items() if day != "Total" for count in row) == 11

    assert table(page, "emailotp-top-ips")[1:] == [
        ["198.51.100.23", "4", "2025-03-15 08:00:00 UTC"],
        ["203.0.113.50", "1", "2025-03-30 14:00:00 UTC"],
    ]
    assert table(page, "emailotp-top-users")[1:] == [["bob", "4", "2025-03-15 08:00:00 UTC"]]
    assert f'<a href="{AUDIT}?ip_address=198.51.100.23">198.51.100.23</a>' in page
    assert f'<a href="{AUDIT}?user__id__exact={other_user.pk}">bob</a>' in page


@time_machine.travel(NOW, tick=False)
def test_activity_charts_are_accessible_inline_svg(superuser: Any, activity: None) -> None:
    page = html(client_for(superuser).get(ACTIVITY))

    assert page.count('<svg xmlns="http://www.w3.org/2000/svg" role="img"') == 6
    assert (
        'aria-labelledby="chart-issued-title chart-issued-desc" data-series="issued">'
        '\n          <title id="chart-issued-title">Codes issued per day</title>'
        '\n          <desc id="chart-issued-desc">'
        "From 2025-03-01 to 2025-03-30 (UTC): 3 in total, at most 3 on 2025-03-02.</desc>"
    ) in page
    assert (
        '<desc id="chart-failed-desc">From 2025-03-01 to 2025-03-30 (UTC): 4 in total, at most 4 on 2025-03-15.' in page
    )
    assert '<desc id="chart-verified-desc">From 2025-03-01 to 2025-03-30 (UTC): 1 in total' in page
    # One bar per day with a count, 14 units apart; the tallest fills the plot (90 units); each says its day and count.
    assert '<rect x="52.0" y="10.0" width="10" height="90.0"><title>2025-03-02: 3</title></rect>' in page
    assert '<rect x="234.0" y="10.0" width="10" height="90.0"><title>2025-03-15: 4</title></rect>' in page
    assert '<rect x="234.0" y="10.0" width="10" height="90.0"><title>2025-03-15: 1</title></rect>' in page
    assert page.count("<rect x=") == 6
    # Nothing from elsewhere: no JavaScript library, no CDN.
    content = page.split('<div id="content-main">')[1]
    assert "<script" not in content
    assert 'src="http' not in page
    assert 'href="http' not in page


def test_activity_page_without_any_events(superuser: Any) -> None:
    with time_machine.travel(NOW, tick=False):
        page = html(client_for(superuser).get(ACTIVITY))

    assert '<desc id="chart-issued-desc">From 2025-03-01 to 2025-03-30 (UTC): none.</desc>' in page
    assert table(page, "emailotp-top-ips")[1:] == [["No failures."]]
    assert table(page, "emailotp-daily")[-1] == ["Total", "0", "0", "0", "0", "0", "0"]
    assert page.count("<rect x=") == 0
