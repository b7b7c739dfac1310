"""The German translation: pages, the code email and API errors come out in German, and the catalog is complete.

The catalog test reads django_emailotp/locale/de/LC_MESSAGES/django.po and asks Django's translation machinery (which
reads the compiled django.mo) for every entry, so a .po edited without running compilemessages fails too.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.core.mail import EmailMessage
from django.test import Client
from django.utils import translation

import django_emailotp
from django_emailotp import services
from django_emailotp.models import Challenge
from tests.conftest import code_from
from tests.test_issue import T0, Capture

PO_FILE = Path(django_emailotp.__file__).parent / "locale" / "de" / "LC_MESSAGES" / "django.po"
# German words that are spelled exactly like the English msgid.
SAME_IN_GERMAN = {"Browser"}
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]")


@pytest.fixture(autouse=True)
def _language_restored() -> Iterator[None]:
    """LocaleMiddleware leaves the request's language active in the test thread; later tests expect English."""
    with translation.override(translation.get_language()):
        yield


def po_entries() -> list[dict[str, Any]]:
    """Every entry of the .po file (the header excluded): msgid, msgid_plural, msgstr / msgstr[n] and flags."""
    entries: list[dict[str, Any]] = []
    for block in PO_FILE.read_text(encoding="utf-8").split("\n\n"):
        entry: dict[str, Any] = {"flags": []}
        key = ""
        for line in block.strip().splitlines():
            if line.startswith("#,"):
                entry["flags"] += [flag.strip() for flag in line[2:].split(",")]
            elif line.startswith("#"):
                continue
            elif line.startswith('"'):
                entry[key] += ast.literal_eval(line)
            else:
                key, _, value = line.partition(" ")
                entry[key] = ast.literal_eval(value)
        if entry.get("msgid"):
            entries.append(entry)
    return entries


def test_every_entry_is_translated_and_compiled() -> None:
    entries = po_entries()
    assert len(entries) > 300
    with translation.override("de"):
        for entry in entries:
            msgid = entry["msgid"]
            assert "fuzzy" not in entry["flags"], msgid
            if "msgid_plural" in entry:
                forms = [(entry["msgstr[0]"], msgid, 1), (entry["msgstr[1]"], entry["msgid_plural"], 2)]
                for msgstr, english, n in forms:
                    assert msgstr, msgid
                    assert translation.ngettext(msgid, entry["msgid_plural"], n) == msgstr
                    assert sorted(PLACEHOLDER.findall(msgstr)) == sorted(PLACEHOLDER.findall(english)), msgid
            else:
                msgstr = entry["msgstr"]
                assert msgstr, msgid
                assert msgstr != msgid or msgid in SAME_IN_GERMAN, msgid
                assert translation.gettext(msgid) == msgstr, msgid
                assert sorted(PLACEHOLDER.findall(msgstr)) == sorted(PLACEHOLDER.findall(msgid)), msgid


def test_the_header_declares_german_plurals() -> None:
    header = PO_FILE.read_text(encoding="utf-8").split("\n\n")[0]
    assert '"Language: de\\n"' in header
    assert '"Plural-Forms: nplurals=2; plural=(n != 1);\\n"' in header
    assert "fuzzy" not in header


def test_code_email_in_german(
    user: Any, django_capture_on_commit_callbacks: Capture, mailoutbox: list[EmailMessage]
) -> None:
    with (
        time_machine.travel(T0, tick=False),
        translation.override("de"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        services.issue_challenge(user=user, purpose="step_up", action="Konto löschen")
    [message] = mailoutbox
    assert message.subject == "Ihr Bestätigungscode für Example"
    code = code_from(message)
    assert message.body == (
        "Ihr Code für Example\n"
        "\n"
        "Verwenden Sie diesen Code, um zu bestätigen, dass Sie es sind:\n"
        "\n"
        f"    {code}\n"
        "\n"
        "Er bestätigt nur diese Aktion: Konto löschen\n"
        "\n"
        "Der Code läuft in 5 Minuten ab (2026-03-02 09:05 UTC) und funktioniert nur einmal.\n"
        "\n"
        "Wir werden Sie niemals per Telefon, Chat oder E-Mail nach diesem Code fragen. Geben Sie ihn an niemanden "
        "weiter.\n"
        "\n"
        "Wenn Sie diesen Code nicht angefordert haben, können Sie diese E-Mail ignorieren: Ohne den Code geschieht "
        "nichts. Wenn Sie immer wieder Codes erhalten, die Sie nicht angefordert haben, ändern Sie bitte Ihr "
        "Passwort.\n"
        "\n"
        "Example - https://example.com\n"
        "\n"
    )
    [(html, mimetype)] = message.alternatives  # type: ignore[attr-defined]
    assert mimetype == "text/html"
    assert 'lang="de"' in html
    assert "Verwenden Sie diesen Code, um zu bestätigen, dass Sie es sind:" in html
    assert "Use this code" not in html


def test_step_up_prompt_follows_accept_language(
    user: Any, client: Client, settings: Any, django_capture_on_commit_callbacks: Capture
) -> None:
    """The example site's LocaleMiddleware picks German from the browser; without the header the page stays English."""
    settings.ROOT_URLCONF = "tests.stepup_urls"
    settings.EMAIL_OTP_PROTECTED_URLS = []
    client.force_login(user)

    english = client.get("/otp/verify/?purpose=step_up")
    assert english.status_code == 200
    assert "<h1>Confirm it is you</h1>" in english.content.decode()

    prompt = client.get("/otp/verify/?purpose=step_up", headers={"Accept-Language": "de"})
    assert prompt.status_code == 200
    assert prompt["Content-Language"] == "de"
    page = prompt.content.decode()
    assert "<h1>Bestätigen Sie, dass Sie es sind</h1>" in page
    assert (
        "Um fortzufahren, bitten wir Sie, mit einem per E-Mail gesendeten Code zu bestätigen, dass Sie es sind." in page
    )
    assert "Wir senden einen Code an <strong>a***@example.com</strong>." in page
    assert ">Code senden</button>" in page
    assert "Confirm it is you" not in page

    with time_machine.travel(T0, tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            sent = client.post("/otp/send/", {"purpose": "step_up"}, headers={"Accept-Language": "de"})
        assert sent.status_code == 302
        pending = client.get("/otp/verify/?purpose=step_up", headers={"Accept-Language": "de"}).content.decode()
        wrong = client.post(
            "/otp/verify/?purpose=step_up", {"purpose": "step_up", "code": "12a"}, headers={"Accept-Language": "de"}
        )
    assert "Gesendet an a***@example.com. Der Code läuft um 09:05 UTC ab." in pending
    assert "Noch 5 Versuche." in pending
    assert "Sie können in 60 Sekunden einen neuen Code anfordern." in pending
    assert ">Bestätigen</button>" in pending
    assert wrong.status_code == 400
    assert "Bitte geben Sie den Code nur als Ziffern ein, zum Beispiel 123456." in wrong.content.decode()


@pytest.mark.parametrize(
    ("language", "message"),
    [
        ("de", "Bitte geben Sie den Code nur als Ziffern ein, zum Beispiel 123456."),
        ("en", "Enter the code as digits only, for example 123456."),
    ],
)
def test_api_error_message_follows_accept_language(
    user: Any, settings: Any, django_capture_on_commit_callbacks: Capture, language: str, message: str
) -> None:
    """The machine-readable error code stays English; the human message is translated."""
    pytest.importorskip("rest_framework")
    from tests.test_api import token_api

    settings.ROOT_URLCONF = "tests.api_urls"
    settings.EMAIL_OTP_PROTECTED_URLS = []
    api = token_api(user)
    headers = {"Accept-Language": language}
    with django_capture_on_commit_callbacks(execute=True):
        created = api.post("/api/otp/challenges/", {"purpose": "step_up"}, headers=headers)
    assert created.status_code == 202
    response = api.post(f"/api/otp/challenges/{created.json()['id']}/verify/", {"code": "12a"}, headers=headers)
    assert (response.status_code, response.json()) == (
        400,
        {"error": "malformed", "message": message, "field_errors": {"code": [message]}},
    )
    assert response["Content-Language"] == language
    assert Challenge.objects.get().attempts == 0


@pytest.mark.django_db(transaction=True)
def test_sign_in_email_sent_on_a_background_thread_keeps_the_page_language(
    user: Any, settings: Any, mailoutbox: list[EmailMessage]
) -> None:
    """Sign-in codes go out on a thread of their own after the response; the email still speaks the page's language."""
    settings.EMAIL_OTP_SIGN_IN_ENABLED = True
    response = Client().post("/otp/sign-in/", {"email": "alice@example.com"}, headers={"Accept-Language": "de"})
    services.wait_for_background_sends()
    assert response.status_code == 302
    [message] = mailoutbox
    assert message.subject == "Ihr Bestätigungscode für Example"
    assert message.body.startswith("Ihr Code für Example\n\nVerwenden Sie diesen Code, um sich anzumelden:\n")
