"""Backup codes through the services and the HTML pages: generation, storage, entry, single use, the throttle,
regeneration behind a fresh step-up (the POST kept and replayed), step-up while the email path is locked, the
notices, the download link, equal work for unknown codes, and race safety on PostgreSQL."""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import time_machine
from argon2 import PasswordHasher
from django.contrib.sessions.backends.db import SessionStore
from django.core import mail
from django.core.cache import cache
from django.core.mail import EmailMessage
from django.db import connection
from django.test import Client, RequestFactory

from django_emailotp import services
from django_emailotp.exceptions import LockedOut
from django_emailotp.models import AuditEvent, BackupCode, Lockout, StepUpGrant
from django_emailotp.services import BackupCodeReason, BackupCodeResult
from tests.conftest import code_from
from tests.factories import UserFactory
from tests.test_issue import T0, Capture, wrong_code
from tests.test_step_up_views import forms_in

CROCKFORD = "[0-9A-HJKMNP-TV-Z]"
SHOWN = re.compile(rf"^{CROCKFORD}{{5}}-{CROCKFORD}{{5}}$")
DEFAULT_HASH_PREFIX = "$argon2id$v=19$m=19456,t=2,p=1$"
# For the tests that need many codes: the smallest parameters the checks accept, so a set of 50 is quick to make.
CHEAP_HASHER = {"time_cost": 1, "memory_cost": 8192, "parallelism": 1}
WRONG_CODE = "ABCDE-FGHJK"  # well-formed; a generated set holds it with probability 10 / 2**50
# WRONG_CODE in full-width letters: looks alike, but is not ASCII.
FULLWIDTH_CODE = "\uff21\uff22\uff23\uff24\uff25-\uff26\uff27\uff28\uff2a\uff2b"

INVALID = "That backup code is not right, or it was used already."
MALFORMED = "A backup code has 10 letters and digits, like ABCDE-FGHJK."
THROTTLED = "Too many wrong backup codes. Please try again later."
OFFER = "Use a backup code instead"
PROMPT = "/otp/verify/?purpose=step_up"


def bare(code: str) -> str:
    return code.replace("-", "")


def plain_forms(code: str) -> tuple[str, str, str]:
    """Every way a code could leak: as shown, without the hyphen, and lower-case."""
    return code, bare(code), bare(code).lower()


def dump(rows: Any) -> str:
    """Every column of every row, as text."""
    return "\n".join(repr(row) for row in rows.values())


def backup_events() -> list[tuple[str, str, dict[str, Any]]]:
    """(event, reason, data) of the backup-code, rate-limit and grant audit rows, oldest first."""
    rows = AuditEvent.objects.filter(
        event__in=["backup_codes_generated", "backup_code_used", "backup_code_failed", "rate_limited"]
    ).order_by("id")
    return [(row.event, row.reason, row.data) for row in rows]


def notices(kind: str) -> list[EmailMessage]:
    subjects = {"used": "Example: a backup code was used", "regenerated": "Example: new backup codes"}
    return [message for message in mail.outbox if message.subject == subjects[kind]]


def assert_no_code_in(message: EmailMessage, codes: list[str]) -> None:
    html = str(message.alternatives[0][0])  # type: ignore[attr-defined]
    for code in codes:
        for form in plain_forms(code):
            assert form not in message.subject
            assert form not in str(message.body)
            assert form not in html


def make_codes(user: Any, capture: Capture) -> list[str]:
    with capture(execute=True):
        return services.regenerate_backup_codes(user)


def use(user: Any, capture: Capture, raw: object, purpose: str = "step_up") -> BackupCodeResult:
    with capture(execute=True):
        return services.use_backup_code(user, raw, purpose=purpose)


@pytest.fixture
def clock() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@pytest.fixture
def verify_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts argon2's PasswordHasher.verify calls (each still runs): one entry, the hash's prefix, per call."""
    calls: list[str] = []
    original = PasswordHasher.verify

    def counting(self: PasswordHasher, hash: str | bytes, password: str | bytes) -> bool:
        calls.append(str(hash)[:31])
        return original(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting)
    return calls


@pytest.fixture
def browser(user: Any, client: Client) -> Client:
    """alice, signed in on the example site."""
    client.force_login(user)
    return client


def session_request(user: Any) -> Any:
    """A request as a view sees it: signed in, with a saved session."""
    request = RequestFactory().post("/", HTTP_USER_AGENT="Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0")
    request.user = user
    request.session = SessionStore()
    request.session.create()
    return request


# ---------------------------------------------------------------------------------------------------------------
# Generation and storage


@pytest.mark.django_db
def test_ten_distinct_codes_of_fifty_bits_shown_once_and_stored_only_as_argon2id(
    user: Any, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    codes = make_codes(user, django_capture_on_commit_callbacks)

    assert len(codes) == 10
    assert len(set(codes)) == 10
    assert all(SHOWN.match(code) for code in codes), codes
    assert all(len(bare(code)) == 10 for code in codes)  # 10 x 5 bits
    rows = list(BackupCode.objects.filter(user=user))
    assert len(rows) == 10
    for row in rows:
        assert row.code_hash.startswith(DEFAULT_HASH_PREFIX)
        assert re.fullmatch(r"[0-9a-f]{8}", row.lookup)
        assert row.used_at is None
    assert len({row.code_hash for row in rows}) == 10  # salted: no two hashes alike
    assert services.backup_codes_remaining(user) == 10

    # Neither the backup-code table nor the audit trail holds a code in any form.
    stored = dump(BackupCode.objects.all()) + dump(AuditEvent.objects.all())
    for code in codes:
        for form in plain_forms(code):
            assert form not in stored
    assert backup_events() == [("backup_codes_generated", "", {"count": 10, "revoked": 0})]
    generated = AuditEvent.objects.get(event="backup_codes_generated")
    assert (generated.user_id, generated.outcome) == (user.pk, "success")

    [notice] = mailoutbox
    assert notice.subject == "Example: new backup codes"
    assert notice.to == ["alice@example.com"]
    assert (
        "A new set of 10 backup codes was just created, from an unknown device. "
        "Every older backup code no longer works." in str(notice.body)
    )
    assert_no_code_in(notice, codes)
    sent = AuditEvent.objects.get(event="notice_sent")
    assert (sent.reason, sent.user_id) == ("backup_codes_regenerated", user.pk)


@pytest.mark.django_db
def test_count_and_length_follow_the_settings(
    user: Any, settings: Any, django_capture_on_commit_callbacks: Capture
) -> None:
    settings.EMAIL_OTP_BACKUP_CODE_COUNT = 3
    settings.EMAIL_OTP_BACKUP_CODE_LENGTH = 12
    settings.EMAIL_OTP_BACKUP_CODE_HASHER = CHEAP_HASHER
    codes = make_codes(user, django_capture_on_commit_callbacks)
    assert [len(code) for code in codes] == [13, 13, 13]  # 6 + hyphen + 6
    assert all(re.fullmatch(rf"{CROCKFORD}{{6}}-{CROCKFORD}{{6}}", code) for code in codes)
    assert all(row.code_hash.startswith("$argon2id$v=19$m=8192,t=1,p=1$") for row in BackupCode.objects.all())
    assert use(user, django_capture_on_commit_callbacks, codes[0]).success


# ---------------------------------------------------------------------------------------------------------------
# Entry: forgiving about case, spaces, hyphens and I/L/O; strict about everything else


@pytest.mark.django_db
def test_entry_ignores_case_spaces_hyphens_and_reads_i_l_o_as_digits(
    user: Any, settings: Any, django_capture_on_commit_callbacks: Capture
) -> None:
    settings.EMAIL_OTP_BACKUP_CODE_COUNT = 50  # enough that some codes hold a 1 and a 0
    settings.EMAIL_OTP_BACKUP_CODE_HASHER = CHEAP_HASHER
    codes = make_codes(user, django_capture_on_commit_callbacks)
    with_one = [code for code in codes if "1" in code]
    with_zero = [code for code in codes if "0" in code and code not in with_one[:2]]
    plain = [code for code in codes if code not in with_one[:2] and code not in with_zero[:1]]
    typed = {
        plain[0]: plain[0].lower(),
        plain[1]: f"  {bare(plain[1])[:3]} {bare(plain[1])[3:7]}  {bare(plain[1])[7:]} ",
        plain[2]: "-".join(bare(plain[2])),
        plain[3]: bare(plain[3]).swapcase()[:4] + " - " + bare(plain[3]).swapcase()[4:],
        with_one[0]: with_one[0].replace("1", "I"),
        with_one[1]: with_one[1].replace("1", "l"),
        with_zero[0]: with_zero[0].replace("0", "o"),
    }
    for code, entry in typed.items():
        assert entry != code
        result = use(user, django_capture_on_commit_callbacks, entry)
        assert (result.success, result.reason) == (True, None), (code, entry)
    assert services.backup_codes_remaining(user) == 50 - len(typed)
    assert BackupCode.objects.filter(used_at__isnull=False).count() == len(typed)


@pytest.mark.django_db
def test_malformed_entries_are_refused_without_spending_a_code_or_an_argon2_verify(
    user: Any, django_capture_on_commit_callbacks: Capture, verify_calls: list[str], mailoutbox: list[EmailMessage]
) -> None:
    [code, *_] = make_codes(user, django_capture_on_commit_callbacks)
    fullwidth = "".join(chr(ord(ch) + 0xFEE0) if ch != "-" else ch for ch in code)  # full-width look-alikes
    entries: list[object] = [
        fullwidth,
        code[:-1] + "\u00e9",  # a non-ASCII letter
        bare(code)[:9],  # too short
        bare(code) + "0",  # too long
        code.replace(code[0], "U", 1),  # U is not in Crockford's alphabet
        code.replace("-", "_"),
        "",
        "A" * 65,
        None,
        1234567890,
    ]
    for entry in entries[:4]:  # stays within the throttle: 4 failures
        result = use(user, django_capture_on_commit_callbacks, entry)
        assert (result.success, result.reason, result.remaining) == (False, BackupCodeReason.MALFORMED, 10), entry
    assert verify_calls == []
    assert services.backup_codes_remaining(user) == 10
    assert [event[:2] for event in backup_events()[1:]] == [("backup_code_failed", "malformed")] * 4
    assert use(user, django_capture_on_commit_callbacks, code).success  # the real one still works
    assert len(notices("used")) == 1
    # The rest, each against a fresh throttle.
    for entry in entries[4:]:
        cache.clear()
        result = use(user, django_capture_on_commit_callbacks, entry)
        assert (result.success, result.reason) == (False, BackupCodeReason.MALFORMED), entry
    assert len(verify_calls) == 1  # the one real code


# ---------------------------------------------------------------------------------------------------------------
# Single use, regeneration, notices


@pytest.mark.django_db
def test_a_code_works_once_and_the_user_is_told_how_many_are_left(
    user: Any, clock: time_machine.Traveller, django_capture_on_commit_callbacks: Capture
) -> None:
    codes = make_codes(user, django_capture_on_commit_callbacks)
    mail.outbox.clear()

    first = use(user, django_capture_on_commit_callbacks, codes[3])
    assert first == BackupCodeResult(True, None, 9, None)
    [row] = BackupCode.objects.filter(used_at__isnull=False)
    assert row.used_at == T0
    again = use(user, django_capture_on_commit_callbacks, codes[3])
    assert again == BackupCodeResult(False, BackupCodeReason.INVALID, 9, None)
    assert BackupCode.objects.filter(used_at__isnull=False).count() == 1

    assert backup_events()[1:] == [
        ("backup_code_used", "", {"remaining": 9}),
        ("backup_code_failed", "invalid", {}),
    ]
    used = AuditEvent.objects.get(event="backup_code_used")
    assert (used.user_id, used.purpose, used.outcome) == (user.pk, "step_up", "success")

    [notice] = mail.outbox
    assert notice.subject == "Example: a backup code was used"
    assert notice.to == ["alice@example.com"]
    assert "One of your backup codes was just used, from an unknown device. 9 backup codes are left." in notice.body
    assert "9 backup codes are left." in str(notice.alternatives[0][0])  # type: ignore[attr-defined]
    assert_no_code_in(notice, codes)

    # The count in the notice goes down to the singular and to zero.
    for code in codes[:3] + codes[4:9]:
        assert use(user, django_capture_on_commit_callbacks, code).success
    assert "1 backup code is left." in mail.outbox[-1].body
    assert use(user, django_capture_on_commit_callbacks, codes[9]) == BackupCodeResult(True, None, 0, None)
    assert "0 backup codes are left." in mail.outbox[-1].body
    assert len(notices("used")) == 10


@pytest.mark.django_db
def test_regenerating_revokes_every_old_code(user: Any, django_capture_on_commit_callbacks: Capture) -> None:
    old = make_codes(user, django_capture_on_commit_callbacks)
    assert use(user, django_capture_on_commit_callbacks, old[0]).success
    new = make_codes(user, django_capture_on_commit_callbacks)
    assert not set(new) & set(old)
    assert BackupCode.objects.count() == 10
    assert services.backup_codes_remaining(user) == 10
    assert use(user, django_capture_on_commit_callbacks, old[1]) == BackupCodeResult(
        False, BackupCodeReason.INVALID, 10, None
    )
    assert use(user, django_capture_on_commit_callbacks, new[0]).success
    assert backup_events() == [
        ("backup_codes_generated", "", {"count": 10, "revoked": 0}),
        ("backup_code_used", "", {"remaining": 9}),
        ("backup_codes_generated", "", {"count": 10, "revoked": 10}),
        ("backup_code_failed", "invalid", {}),
        ("backup_code_used", "", {"remaining": 9}),
    ]
    assert len(notices("regenerated")) == 2


@pytest.mark.django_db
def test_codes_belong_to_their_user(user: Any, other_user: Any, django_capture_on_commit_callbacks: Capture) -> None:
    alices = make_codes(user, django_capture_on_commit_callbacks)
    bobs = make_codes(other_user, django_capture_on_commit_callbacks)
    assert use(other_user, django_capture_on_commit_callbacks, alices[0]).reason == BackupCodeReason.INVALID
    assert services.backup_codes_remaining(user) == 10
    make_codes(user, django_capture_on_commit_callbacks)  # alice's new set leaves bob's alone
    assert use(other_user, django_capture_on_commit_callbacks, bobs[0]).success


# ---------------------------------------------------------------------------------------------------------------
# Equal work whether or not a code exists


@pytest.mark.django_db
def test_a_code_with_no_candidate_row_still_costs_one_argon2_verify(
    user: Any, other_user: Any, django_capture_on_commit_callbacks: Capture, verify_calls: list[str]
) -> None:
    codes = make_codes(user, django_capture_on_commit_callbacks)
    assert WRONG_CODE not in codes

    assert use(user, django_capture_on_commit_callbacks, WRONG_CODE).reason == BackupCodeReason.INVALID
    assert len(verify_calls) == 1
    assert use(user, django_capture_on_commit_callbacks, codes[0]).success
    assert len(verify_calls) == 2
    assert use(user, django_capture_on_commit_callbacks, codes[0]).reason == BackupCodeReason.INVALID  # used
    assert len(verify_calls) == 3
    # A user with no backup codes at all: the same one verify, against the throwaway hash.
    assert use(other_user, django_capture_on_commit_callbacks, codes[1]).reason == BackupCodeReason.INVALID
    assert len(verify_calls) == 4
    # The throwaway hash has the configured parameters, so it costs what a real verify costs.
    assert all(prefix == DEFAULT_HASH_PREFIX for prefix in verify_calls)


# ---------------------------------------------------------------------------------------------------------------
# Their own throttle, apart from the email-code lockout


@pytest.mark.django_db
def test_five_wrong_codes_throttle_backup_codes_only(
    user: Any, clock: time_machine.Traveller, django_capture_on_commit_callbacks: Capture, verify_calls: list[str]
) -> None:
    codes = make_codes(user, django_capture_on_commit_callbacks)
    for _ in range(5):
        assert use(user, django_capture_on_commit_callbacks, WRONG_CODE).reason == BackupCodeReason.INVALID
    assert len(verify_calls) == 5

    refused = use(user, django_capture_on_commit_callbacks, codes[0])  # even the right code
    assert (refused.success, refused.reason, refused.remaining) == (False, BackupCodeReason.RATE_LIMITED, 0)
    assert refused.retry_after is not None
    assert 1 <= refused.retry_after <= 900
    assert len(verify_calls) == 5  # refused before any argon2 work
    assert services.backup_codes_remaining(user) == 10
    limited = AuditEvent.objects.get(event="rate_limited")
    assert (limited.reason, limited.user_id, limited.outcome, limited.data) == (
        "backup_code_failures_per_user",
        user.pk,
        "failure",
        {"retry_after": refused.retry_after},
    )

    # The email-code path is untouched: no lockout row, and an emailed code still works.
    assert Lockout.objects.count() == 0
    services.ensure_not_locked_out(user)
    with django_capture_on_commit_callbacks(execute=True):
        challenge = services.issue_challenge(user=user, purpose="step_up")
    assert services.verify_challenge(challenge.pk, code_from(mail.outbox[-1])).success

    clock.shift(refused.retry_after)
    assert use(user, django_capture_on_commit_callbacks, codes[0]).success


@pytest.mark.django_db
def test_backup_codes_work_while_the_email_path_is_locked_out(
    user: Any, settings: Any, clock: time_machine.Traveller, django_capture_on_commit_callbacks: Capture
) -> None:
    settings.EMAIL_OTP_LOCKOUT_THRESHOLD = 1
    codes = make_codes(user, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        challenge = services.issue_challenge(user=user, purpose="step_up")
    with django_capture_on_commit_callbacks(execute=True):
        services.verify_challenge(challenge.pk, wrong_code(code_from(mail.outbox[-1])))
    with pytest.raises(LockedOut):
        services.ensure_not_locked_out(user)

    request = session_request(user)
    with django_capture_on_commit_callbacks(execute=True):
        result = services.complete_step_up_with_backup_code(request, codes[0], purpose="step_up")
    assert result == BackupCodeResult(True, None, 9, None)
    grant = StepUpGrant.objects.get(user=user, purpose="step_up")
    assert grant.expires_at == T0 + timedelta(seconds=300)
    granted = AuditEvent.objects.get(event="step_up_granted")
    assert granted.data == {"expires_at": grant.expires_at.isoformat(), "method": "backup_code"}
    assert services.find_step_up_grant(request, services.StepUpRequirement(purpose="step_up")) == grant
    assert "Firefox on Linux" in notices("used")[0].body
    with pytest.raises(LockedOut):  # the lockout itself stands; backup codes go around it
        services.ensure_not_locked_out(user)


@pytest.mark.django_db
def test_step_up_needs_a_signed_in_user_and_a_step_up_purpose(
    user: Any, django_capture_on_commit_callbacks: Capture
) -> None:
    codes = make_codes(user, django_capture_on_commit_callbacks)
    request = session_request(user)
    refused = services.complete_step_up_with_backup_code(request, codes[0], purpose="login")
    assert refused == BackupCodeResult(False, BackupCodeReason.INVALID, 0, None)
    assert services.backup_codes_remaining(user) == 10
    assert StepUpGrant.objects.count() == 0


# ---------------------------------------------------------------------------------------------------------------
# The HTML pages (the example site)


@pytest.mark.django_db
def test_step_up_with_a_backup_code_opens_the_protected_page(
    browser: Client, user: Any, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    codes = make_codes(user, django_capture_on_commit_callbacks)
    mailoutbox.clear()
    protected = browser.get("/security/")
    assert (protected.status_code, protected["Location"]) == (302, f"{PROMPT}&next=%2Fsecurity%2F")

    prompt = browser.get(protected["Location"])
    assert OFFER in prompt.content.decode()
    [form] = [form for form in forms_in(prompt) if form.action == "/otp/verify/backup-code/"]
    assert form.method == "post"
    assert [name for name, _ in form.fields] == ["csrfmiddlewaretoken", "purpose", "backup_code"]
    assert form.buttons == ["Confirm with a backup code"]

    with django_capture_on_commit_callbacks(execute=True):
        done = browser.post(form.action, {"purpose": "step_up", "backup_code": codes[5].lower()})
    assert (done.status_code, done["Location"]) == (302, "/security/")
    assert "no-store" in done["Cache-Control"]
    page = browser.get("/security/")
    assert page.status_code == 200
    assert "<h1>Security settings</h1>" in page.content.decode()
    assert mailoutbox == notices("used")
    assert "9 backup codes are left." in mailoutbox[0].body
    assert backup_events()[1:] == [("backup_code_used", "", {"remaining": 9})]

    # Used up: the same code does not step up again.
    again = browser.post(form.action, {"purpose": "step_up", "backup_code": codes[5]})
    assert again.status_code == 400
    assert INVALID in again.content.decode()


@pytest.mark.django_db
def test_the_prompt_offers_backup_codes_only_to_users_who_have_some(
    browser: Client, user: Any, django_capture_on_commit_callbacks: Capture
) -> None:
    assert OFFER not in browser.get(PROMPT).content.decode()
    make_codes(user, django_capture_on_commit_callbacks)
    assert OFFER in browser.get(PROMPT).content.decode()


@pytest.mark.django_db
def test_wrong_and_malformed_codes_on_the_page_then_429(
    browser: Client, user: Any, django_capture_on_commit_callbacks: Capture
) -> None:
    codes = make_codes(user, django_capture_on_commit_callbacks)
    wrong = browser.post("/otp/verify/backup-code/", {"purpose": "step_up", "backup_code": WRONG_CODE})
    assert wrong.status_code == 400
    assert INVALID in wrong.content.decode()
    assert '<details class="emailotp-backup" open>' in wrong.content.decode()
    malformed = browser.post("/otp/verify/backup-code/", {"purpose": "step_up", "backup_code": FULLWIDTH_CODE})
    assert malformed.status_code == 400
    assert MALFORMED in malformed.content.decode()
    for _ in range(3):
        assert (
            browser.post("/otp/verify/backup-code/", {"purpose": "step_up", "backup_code": WRONG_CODE}).status_code
            == 400
        )

    throttled = browser.post("/otp/verify/backup-code/", {"purpose": "step_up", "backup_code": codes[0]})
    assert throttled.status_code == 429
    assert 1 <= int(throttled["Retry-After"]) <= 900
    assert THROTTLED in throttled.content.decode()
    assert "no-store" in throttled["Cache-Control"]
    assert StepUpGrant.objects.count() == 0
    assert browser.get("/security/").status_code == 302
    assert services.backup_codes_remaining(user) == 10
    assert [event[:2] for event in backup_events()[1:]] == [
        ("backup_code_failed", "invalid"),
        ("backup_code_failed", "malformed"),
        *[("backup_code_failed", "invalid")] * 3,
        ("rate_limited", "backup_code_failures_per_user"),
    ]


@pytest.mark.django_db
def test_the_page_steps_up_with_a_backup_code_while_email_codes_are_locked(
    browser: Client, user: Any, settings: Any, django_capture_on_commit_callbacks: Capture
) -> None:
    settings.EMAIL_OTP_LOCKOUT_THRESHOLD = 1
    codes = make_codes(user, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        browser.post("/otp/send/", {"purpose": "step_up"})
    code = code_from(mail.outbox[-1])
    assert browser.post("/otp/verify/", {"purpose": "step_up", "code": wrong_code(code)}).status_code == 400
    assert browser.post("/otp/verify/", {"purpose": "step_up", "code": code}).status_code == 429
    assert browser.post("/otp/send/", {"purpose": "step_up"}).status_code == 429

    done = browser.post("/otp/verify/backup-code/", {"purpose": "step_up", "backup_code": codes[0]})
    assert (done.status_code, done["Location"]) == (302, "/")
    assert browser.get("/security/").status_code == 200


@pytest.mark.django_db
def test_regenerating_on_the_page_keeps_the_post_across_the_prompt_and_shows_the_codes_once(
    browser: Client,
    user: Any,
    clock: time_machine.Traveller,
    django_capture_on_commit_callbacks: Capture,
    mailoutbox: list[EmailMessage],
) -> None:
    old = make_codes(user, django_capture_on_commit_callbacks)
    hashes_before = set(BackupCode.objects.values_list("code_hash", flat=True))
    mailoutbox.clear()
    overview = browser.get("/otp/backup-codes/")
    assert overview.status_code == 200
    assert "You have 10 unused backup codes." in overview.content.decode()
    [form] = forms_in(overview)
    assert (form.action, form.method, form.buttons) == (
        "/otp/backup-codes/new/",
        "post",
        ["Replace them with a new set"],
    )

    # Without a fresh grant the POST is kept, and the user is asked to confirm.
    kept = browser.post(form.action)
    assert kept.status_code == 302
    location = urlsplit(kept["Location"])
    query = parse_qs(location.query)
    assert (location.path, query["purpose"], query["next"]) == ("/otp/verify/", ["step_up"], ["/otp/backup-codes/new/"])
    [token] = query["replay"]
    assert set(BackupCode.objects.values_list("code_hash", flat=True)) == hashes_before
    assert notices("regenerated") == []
    assert use(user, django_capture_on_commit_callbacks, old[0]).success  # the old set still works
    mailoutbox.clear()

    browser.get(kept["Location"])
    with django_capture_on_commit_callbacks(execute=True):
        browser.post("/otp/send/", {"purpose": "step_up"})
    verified = browser.post("/otp/verify/", {"purpose": "step_up", "code": code_from(mailoutbox[-1])})
    assert (verified.status_code, verified["Location"]) == (302, f"/otp/continue/?token={token}")
    [replay] = forms_in(browser.get(verified["Location"]))
    assert (replay.action, [name for name, _ in replay.fields]) == ("/otp/backup-codes/new/", ["csrfmiddlewaretoken"])

    with django_capture_on_commit_callbacks(execute=True):
        shown = browser.post(replay.action, dict(replay.fields))
    assert shown.status_code == 200
    assert "no-store" in shown["Cache-Control"]
    body = shown.content.decode()
    codes = re.findall(r"<li><code>([^<]+)</code></li>", body)
    assert len(codes) == len(set(codes)) == 10
    assert all(SHOWN.match(code) for code in codes)
    assert not set(codes) & set(old)
    assert "This is the only time they are shown" in body

    # The download link holds the same codes as text.
    [link] = re.findall(r'<a href="(data:text/plain;charset=utf-8,[^"]+)" download="backup-codes.txt">', body)
    text = unquote(link.removeprefix("data:text/plain;charset=utf-8,"))
    assert text.splitlines()[0] == "Example backup codes"
    assert [line for line in text.splitlines() if SHOWN.match(line)] == codes

    # Only hashes are kept; the old set is gone.
    assert services.backup_codes_remaining(user) == 10
    stored = dump(BackupCode.objects.all()) + dump(AuditEvent.objects.all())
    assert not [form for code in codes for form in plain_forms(code) if form in stored]
    for code in old[1:3]:
        assert use(user, django_capture_on_commit_callbacks, code).reason == BackupCodeReason.INVALID
    assert use(user, django_capture_on_commit_callbacks, codes[0]).success

    [notice] = notices("regenerated")
    assert_no_code_in(notice, codes + old)

    # Shown once: the overview counts, it does not show them again.
    later = browser.get("/otp/backup-codes/").content.decode()
    assert "You have 9 unused backup codes." in later
    assert not [code for code in codes if code in later]

    # A new set after the window closes needs a new step-up.
    clock.shift(301)
    assert browser.post("/otp/backup-codes/new/").status_code == 302
    assert services.backup_codes_remaining(user) == 9


@pytest.mark.django_db
def test_pages_need_a_signed_in_user_and_post(client: Client, user: Any) -> None:
    assert client.get("/otp/backup-codes/")["Location"].startswith("/accounts/login/")
    assert client.post("/otp/backup-codes/new/")["Location"].startswith("/accounts/login/")
    client.force_login(user)
    assert client.get("/otp/verify/backup-code/").status_code == 405
    # A GET makes no codes (the step-up mark is seen first, so it is prompted; with a grant it is refused).
    assert client.get("/otp/backup-codes/new/").status_code == 302
    assert BackupCode.objects.count() == 0


# ---------------------------------------------------------------------------------------------------------------
# Race safety (PostgreSQL: real threads, one connection each)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_sixteen_threads_using_the_same_code_at_once_one_succeeds(settings: Any, is_postgres: bool) -> None:
    assert is_postgres
    settings.EMAIL_OTP_RATES = {"backup_code_failures_per_user": "100/15m"}  # every loser is counted as invalid
    user = UserFactory(username="alice", email="alice@example.com")
    [code, *_] = services.regenerate_backup_codes(user)
    count = 16
    barrier = threading.Barrier(count)
    results: list[BackupCodeResult | None] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            connection.ensure_connection()
            barrier.wait(timeout=30)
            results[index] = services.use_backup_code(user, code, purpose="step_up")
        except BaseException as exc:
            barrier.abort()
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert Counter((r.success, r.reason) for r in results if r is not None) == {
        (True, None): 1,
        (False, BackupCodeReason.INVALID): 15,
    }
    assert BackupCode.objects.filter(used_at__isnull=False).count() == 1
    assert services.backup_codes_remaining(user) == 9
    assert AuditEvent.objects.filter(event="backup_code_used").count() == 1
    assert AuditEvent.objects.filter(event="backup_code_failed", reason="invalid").count() == 15
    assert len(notices("used")) == 1
