"""The shipped translations: every catalog is complete and compiled; pages, the code email and API errors come out
in German.

The catalog tests read each django_emailotp/locale/<locale>/LC_MESSAGES/django.po and ask Django's translation
machinery (which reads the compiled django.mo) for every entry and every plural form, so a .po edited without running
compilemessages fails too.
"""

from __future__ import annotations

import ast
import gettext
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import django
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

LOCALE_DIR = Path(django_emailotp.__file__).parent / "locale"
LOCALES = sorted(path.parent.parent.name for path in LOCALE_DIR.glob("*/LC_MESSAGES/django.po"))
# Words spelled exactly like the English msgid, per locale.
SAME_AS_ENGLISH = {
    "de": {"Browser"},
    "es": {"Total"},
    "fr": {"Total", "information"},
    "it": {"Browser", "user agent"},
    "nl": {"Browser", "details", "status"},
    "pl": {"status"},
    "pt_BR": {"Total", "status"},
}
# Placeholders, and the HTML tags and entities some texts carry: each must come through translation unchanged.
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]|%[sd]|\{\w*\}|</?\w+[^>]*>|&#?\w+;")
# Django 6.1 took CLDR's plural rules for French, with a third form for millions; Django 5.2 has two. Both are
# Django's own formula, and Django reads each catalog with the formula in its own header.
DJANGO_PLURALS_BEFORE_6_1 = {"fr": "nplurals=2; plural=(n > 1);"}


def po_file(locale: str) -> Path:
    return LOCALE_DIR / locale / "LC_MESSAGES" / "django.po"


def placeholders(text: str) -> list[str]:
    return sorted(PLACEHOLDER.findall(text))


@pytest.fixture(autouse=True)
def _language_restored() -> Iterator[None]:
    """LocaleMiddleware leaves the request's language active in the test thread; later tests expect English."""
    with translation.override(translation.get_language()):
        yield


def po_entries(path: Path) -> list[dict[str, Any]]:
    """Every entry of a .po file (the header excluded): msgid, msgid_plural, msgstr / msgstr[n] and flags."""
    entries: list[dict[str, Any]] = []
    for block in path.read_text(encoding="utf-8").split("\n\n"):
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


def header_fields(path: Path) -> dict[str, str]:
    """The header entry of a .po file as a dict: {"Language": "de", "Plural-Forms": "nplurals=2; ...", ...}."""
    header = path.read_text(encoding="utf-8").split("\n\n")[0]
    text = "".join(ast.literal_eval(line) for line in header.splitlines() if line.startswith('"'))
    return dict(field.split(": ", 1) for field in text.splitlines())


def test_every_locale_is_checked() -> None:
    assert {"de", "ja", "zh_Hans", "ar", "ko", "fr", "es", "it", "pt_BR", "nl", "pl", "ru", "tr", "uk"} <= set(LOCALES)


@pytest.mark.parametrize("locale", LOCALES)
def test_every_entry_is_translated_and_compiled(locale: str) -> None:
    entries = po_entries(po_file(locale))
    assert len(entries) > 300
    plural_forms = header_fields(po_file(locale))["Plural-Forms"]
    nplurals = int(plural_forms.split(";")[0].removeprefix("nplurals="))
    plural = gettext.c2py(plural_forms.partition("plural=")[2].rstrip(";"))
    # The smallest count that picks each plural form, so that ngettext is asked for every form a whole number picks
    # (Spanish keeps one form for whole millions, "1000000 de intentos"). Django's rules for pl, ru and uk have a
    # fourth form that only fractions pick; it must be filled all the same.
    count_for_form: dict[int, int] = {}
    for n in [*range(200), 1_000_000]:
        count_for_form.setdefault(plural(n), n)
    assert set(count_for_form) <= set(range(nplurals))
    with translation.override(translation.to_language(locale)):
        for entry in entries:
            msgid = entry["msgid"]
            assert "fuzzy" not in entry["flags"], msgid
            if "msgid_plural" in entry:
                assert sorted(key for key in entry if key.startswith("msgstr[")) == [
                    f"msgstr[{form}]" for form in range(nplurals)
                ], msgid
                for form in range(nplurals):
                    msgstr, n = entry[f"msgstr[{form}]"], count_for_form.get(form)
                    english = msgid if n == 1 else entry["msgid_plural"]
                    assert msgstr, (msgid, form)
                    assert placeholders(msgstr) == placeholders(english), (msgid, form)
                    if n is not None:
                        assert translation.ngettext(msgid, entry["msgid_plural"], n) == msgstr, (msgid, n)
            else:
                msgstr = entry["msgstr"]
                assert msgstr, msgid
                assert msgstr != msgid or msgid in SAME_AS_ENGLISH.get(locale, set()), msgid
                assert translation.gettext(msgid) == msgstr, msgid
                assert placeholders(msgstr) == placeholders(msgid), msgid


@pytest.mark.parametrize("locale", LOCALES)
def test_the_header_declares_the_language_and_djangos_plural_forms(locale: str) -> None:
    """Plural-Forms must be the formula Django's own catalog uses for the language (German: n != 1)."""
    fields = header_fields(po_file(locale))
    djangos = header_fields(Path(django.__file__).parent / "conf" / "locale" / locale / "LC_MESSAGES" / "django.po")
    assert fields["Language"] == locale
    assert fields["Plural-Forms"] in {djangos["Plural-Forms"], DJANGO_PLURALS_BEFORE_6_1.get(locale)}
    assert fields["Last-Translator"] == "django-emailotp developers"
    assert fields["Language-Team"] not in {"", "LANGUAGE <LL@li.org>"}
    assert "fuzzy" not in po_file(locale).read_text(encoding="utf-8").split("\n\n")[0]


def test_german_plural_forms() -> None:
    assert header_fields(po_file("de"))["Plural-Forms"] == "nplurals=2; plural=(n != 1);"


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
