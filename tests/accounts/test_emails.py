"""Customer emails and storefront pages: rendering in every locale, escaping, and delivery over real SMTP."""

from __future__ import annotations

import asyncio
import email.policy
import json
from datetime import UTC, datetime, timedelta, timezone
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from jinja2 import UndefinedError

from accounts.emails import EmailContent, EmailRenderer, MailRefused, SmtpMailer, _mime_message
from accounts.locales import locale_from_accept_language, normalize_locale
from accounts.settings import PROJECT_ROOT, Settings
from devstack.mailsink import MailSink

MESSAGES = (
    "account_deleted",
    "verify",
    "reminder",
    "welcome",
    "already_registered",
    "account_locked",
    "password_reset",
    "set_password",
    "password_changed",
    "email_change_confirm",
    "email_changed",
    "mfa_code",
    "mfa_removed",
    "mfa_activated",
    "agent_assist",
    "inactivity_reminder",
    "inactivity_warning",
)
LOCALES = ("en_US", "de_DE")
SUPPORTED = ("en_US", "de_DE")
LINK = "http://localhost:8000/register/confirm?token=abc123"


@pytest.fixture(scope="module")
def renderer() -> EmailRenderer:
    return EmailRenderer(PROJECT_ROOT / "templates", default_locale="en_US")


def customer(
    *, salutation: str | None = "Ms", first_name: str | None = "Anna", last_name: str | None = "Smith"
) -> dict[str, Any]:
    return {
        "salutation": salutation,
        "first_name": first_name,
        "last_name": last_name,
        "email": "anna@example.com",
    }


def context(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "shop_name": "Shop",
        "public_url": "http://localhost:8000",
        "customer": customer(),
        "link": LINK,
        "expires_at": datetime(2026, 11, 25, 10, 40, tzinfo=UTC),
        "login_url": "http://localhost:8000/login",
        "reset_url": "http://localhost:8000/password/reset",
        "locked_until": datetime(2026, 11, 25, 11, 10, tzinfo=UTC),
        "failures": 5,
        "changed_at": datetime(2026, 11, 25, 9, 15, tzinfo=UTC),
        "new_email_masked": "a***@example.org",
        "code": "042917",
        "valid_minutes": 30,
        "removed": "email, totp",
        "activated": "totp",
        "due_at": datetime(2028, 10, 1, 9, 0, tzinfo=UTC),
    }
    return values | overrides


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("name", MESSAGES)
def test_every_message_renders_all_three_parts(renderer: EmailRenderer, name: str, locale: str) -> None:
    content = renderer.render_email(name, locale, context())

    assert content.subject.strip()
    assert "\n" not in content.subject
    assert content.text.strip()
    assert content.html.strip()
    assert renderer.has_email(name)


@pytest.mark.parametrize("name", MESSAGES)
def test_german_messages_are_german(renderer: EmailRenderer, name: str) -> None:
    english = renderer.render_email(name, "en_US", context())
    german = renderer.render_email(name, "de_DE", context())

    assert german.subject != english.subject
    assert '<html lang="de">' in german.html
    assert '<html lang="en">' in english.html


@pytest.mark.parametrize("name", ["verify", "reminder"])
def test_confirmation_link_stands_alone_in_text_and_is_a_button_in_html(renderer: EmailRenderer, name: str) -> None:
    content = renderer.render_email(name, "en_US", context())

    assert LINK in content.text.splitlines()
    assert f'href="{LINK}"' in content.html
    assert "November 25, 2026 at 10:40 UTC" in content.text


def test_already_registered_offers_sign_in_and_reset_on_their_own_lines(renderer: EmailRenderer) -> None:
    content = renderer.render_email("already_registered", "de_DE", context())

    lines = content.text.splitlines()
    assert "http://localhost:8000/login" in lines
    assert "http://localhost:8000/password/reset" in lines


def test_dates_follow_the_locale(renderer: EmailRenderer) -> None:
    german = renderer.render_email("verify", "de_DE", context())

    assert "25.11.2026, 10:40 UTC" in german.text
    assert "25.11.2026, 10:40 UTC" in german.html


def test_dates_keep_their_own_time_zone(renderer: EmailRenderer) -> None:
    berlin_winter = timezone(timedelta(hours=1), "CET")
    content = renderer.render_email(
        "verify", "en_US", context(expires_at=datetime(2026, 1, 2, 9, 5, tzinfo=berlin_winter))
    )

    assert "January 2, 2026 at 09:05 CET" in content.text


def test_a_naive_expiry_is_refused(renderer: EmailRenderer) -> None:
    with pytest.raises(ValueError, match="aware"):
        renderer.render_email("verify", "en_US", context(expires_at=datetime(2026, 11, 25, 10, 40)))


@pytest.mark.parametrize("locale", ["fr_FR", "xx", "", "../../etc"])
def test_unknown_locale_falls_back_to_english(renderer: EmailRenderer, locale: str) -> None:
    assert renderer.render_email("verify", locale, context()) == renderer.render_email("verify", "en_US", context())


@pytest.mark.parametrize("locale", ["de", "de-DE", "DE_de", "de-AT"])
def test_locale_spellings_reach_the_german_templates(renderer: EmailRenderer, locale: str) -> None:
    assert renderer.render_email("welcome", locale, context()) == renderer.render_email("welcome", "de_DE", context())


@pytest.mark.parametrize(
    ("locale", "who", "greeting"),
    [
        ("en_US", customer(salutation="Ms"), "Dear Ms. Smith,"),
        ("en_US", customer(salutation="Mr"), "Dear Mr. Smith,"),
        ("en_US", customer(salutation="Dr"), "Dear Dr. Smith,"),
        ("en_US", customer(salutation=None), "Hello Anna,"),
        ("en_US", customer(salutation="Ms", last_name=None), "Hello Anna,"),
        ("en_US", customer(salutation=None, first_name=None), "Hello,"),
        ("de_DE", customer(salutation="Mrs"), "Sehr geehrte Frau Smith,"),
        ("de_DE", customer(salutation="Ms"), "Sehr geehrte Frau Smith,"),
        ("de_DE", customer(salutation="Mr"), "Sehr geehrter Herr Smith,"),
        ("de_DE", customer(salutation="Dr"), "Guten Tag Dr. Smith,"),
        ("de_DE", customer(salutation=None), "Hallo Anna,"),
        ("de_DE", customer(salutation=None, first_name=" ", last_name=None), "Guten Tag,"),
    ],
)
def test_greeting(renderer: EmailRenderer, locale: str, who: dict[str, Any], greeting: str) -> None:
    content = renderer.render_email("welcome", locale, context(customer=who))

    assert content.text.splitlines()[0] == greeting
    assert f">{greeting}</p>" in content.html


def test_html_escapes_customer_data_and_text_keeps_it_raw(renderer: EmailRenderer) -> None:
    content = renderer.render_email(
        "verify", "en_US", context(customer=customer(salutation=None, first_name="<script>"))
    )

    assert "<script>" not in content.html
    assert "&lt;script&gt;" in content.html
    assert "Hello <script>," in content.text


def test_a_missing_variable_fails_instead_of_rendering_blank(renderer: EmailRenderer) -> None:
    incomplete = context()
    del incomplete["link"]

    with pytest.raises(UndefinedError, match="link"):
        renderer.render_email("verify", "en_US", incomplete)


def test_has_email_only_for_messages_with_templates(renderer: EmailRenderer) -> None:
    assert renderer.has_email("verify")
    assert not renderer.has_email("no_such_message")


@pytest.mark.parametrize(
    ("locale", "outcome", "heading"),
    [
        ("en_US", "activated", "Your account is active"),
        ("en_US", "already_active", "Your email is already confirmed"),
        ("en_US", "invalid", "This confirmation link is invalid, expired or was already used"),
        ("de_DE", "activated", "Ihr Kundenkonto ist aktiv"),
        ("de_DE", "already_active", "Ihre E-Mail-Adresse ist bereits bestätigt"),
        ("de_DE", "invalid", "Dieser Bestätigungslink ist ungültig, abgelaufen oder wurde bereits verwendet"),
    ],
)
def test_register_confirm_page(renderer: EmailRenderer, locale: str, outcome: str, heading: str) -> None:
    page = renderer.render_page(
        "register_confirm",
        locale,
        {
            "shop_name": "Shop",
            "outcome": outcome,
            "customer_first_name": "<b>Anna</b>",
            "login_url": "http://localhost:8000/login",
        },
    )

    assert page.startswith("<!DOCTYPE html>")
    assert f'<html lang="{locale[:2]}">' in page
    assert heading in page
    assert 'href="http://localhost:8000/login"' in page
    assert "<script" not in page
    assert "<b>Anna</b>" not in page


def test_register_confirm_page_in_an_unknown_locale_is_english(renderer: EmailRenderer) -> None:
    page = renderer.render_page(
        "register_confirm",
        "fr",
        {"shop_name": "Shop", "outcome": "activated", "customer_first_name": None, "login_url": "/login"},
    )

    assert '<html lang="en">' in page
    assert "Your account is active" in page


@pytest.mark.parametrize("name", ["password_reset", "set_password"])
@pytest.mark.parametrize("locale", LOCALES)
def test_password_link_stands_alone_in_text_and_is_a_button_in_html(
    renderer: EmailRenderer, name: str, locale: str
) -> None:
    content = renderer.render_email(name, locale, context())
    expiry = {"en_US": "November 25, 2026 at 10:40 UTC", "de_DE": "25.11.2026, 10:40 UTC"}[locale]

    assert LINK in content.text.splitlines()
    assert f'href="{LINK}"' in content.html
    assert expiry in content.text
    assert expiry in content.html


@pytest.mark.parametrize(
    ("locale", "reassurance"),
    [
        ("en_US", "your password stays as it is"),
        ("de_DE", "Ihr Passwort bleibt unverändert"),
    ],
)
def test_password_reset_says_an_unasked_reset_changes_nothing(
    renderer: EmailRenderer, locale: str, reassurance: str
) -> None:
    content = renderer.render_email("password_reset", locale, context())

    assert reassurance in content.text
    assert reassurance in content.html


@pytest.mark.parametrize(
    ("locale", "changed"),
    [
        ("en_US", "changed on November 25, 2026 at 09:15 UTC"),
        ("de_DE", "am 25.11.2026, 09:15 UTC geändert"),
    ],
)
def test_password_changed_names_the_time_and_offers_the_reset_link(
    renderer: EmailRenderer, locale: str, changed: str
) -> None:
    reset_url = "http://localhost:8000/password/reset"
    content = renderer.render_email("password_changed", locale, context())

    assert changed in content.text
    assert changed in content.html
    assert reset_url in content.text.splitlines()
    assert f'href="{reset_url}"' in content.html


def test_password_changed_needs_an_aware_time(renderer: EmailRenderer) -> None:
    with pytest.raises(ValueError, match="aware"):
        renderer.render_email("password_changed", "de_DE", context(changed_at=datetime(2026, 11, 25, 9, 15)))


def restore_context(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "shop_name": "Shop",
        "token": "tok-123",
        "state": "form",
        "errors": [],
        "login_url": "http://localhost:8000/login",
        "min_length": 12,
    }
    return values | overrides


@pytest.mark.parametrize(
    ("locale", "state", "heading", "text"),
    [
        ("en_US", "form", "Choose a new password", "at least 12 characters"),
        ("en_US", "done", "Your password was changed", "You can sign in now"),
        ("en_US", "invalid", "This link is invalid, expired or was already used", "request a new link"),
        ("de_DE", "form", "Neues Passwort festlegen", "Mindestens 12 Zeichen"),
        ("de_DE", "done", "Ihr Passwort wurde geändert", "Sie können sich jetzt mit Ihrem neuen Passwort anmelden"),
        ("de_DE", "invalid", "Dieser Link ist ungültig, abgelaufen oder wurde bereits verwendet", "neuen Link"),
    ],
)
def test_restore_password_page(renderer: EmailRenderer, locale: str, state: str, heading: str, text: str) -> None:
    page = renderer.render_page("restore_password", locale, restore_context(state=state))

    assert page.startswith("<!DOCTYPE html>")
    assert f'<html lang="{locale[:2]}">' in page
    assert f"<h1>{heading}</h1>" in page
    assert text in page
    assert "<script" not in page
    assert ("<form" in page) == (state == "form")
    if state != "form":
        assert 'href="http://localhost:8000/login"' in page
        assert "tok-123" not in page


@pytest.mark.parametrize("locale", LOCALES)
def test_restore_password_form_posts_without_javascript(renderer: EmailRenderer, locale: str) -> None:
    page = renderer.render_page("restore_password", locale, restore_context())

    assert '<form method="post" action="/password/restore">' in page
    assert '<input type="hidden" name="token" value="tok-123">' in page
    for field in ("password", "confirm_password"):
        assert (
            f'<input id="{field}" name="{field}" type="password" autocomplete="new-password" required minlength="12"'
        ) in page
    assert '<button type="submit"' in page
    assert "<script" not in page
    assert "onsubmit" not in page
    assert "onclick" not in page
    assert 'role="alert"' not in page


@pytest.mark.parametrize("locale", LOCALES)
def test_restore_password_form_escapes_the_token(renderer: EmailRenderer, locale: str) -> None:
    token = '"><script>alert(1)</script>'
    page = renderer.render_page("restore_password", locale, restore_context(token=token))

    assert '<input type="hidden" name="token" value="&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;">' in page
    assert "<script" not in page


@pytest.mark.parametrize("locale", LOCALES)
def test_restore_password_form_shows_errors_above_the_form_escaped(renderer: EmailRenderer, locale: str) -> None:
    errors = ["The two passwords are not identical.", "<b>too short</b>"]
    page = renderer.render_page("restore_password", locale, restore_context(errors=errors))

    assert 'role="alert"' in page
    assert "<li>The two passwords are not identical.</li>" in page
    assert "<li>&lt;b&gt;too short&lt;/b&gt;</li>" in page
    assert page.index('role="alert"') < page.index("<form")


def password_errors(locale: str) -> dict[str, str]:
    path = PROJECT_ROOT / "templates" / "pages" / locale / "password_errors.json"
    loaded = json.loads(path.read_text("utf-8"))
    assert isinstance(loaded, dict)
    return loaded


@pytest.mark.parametrize("locale", LOCALES)
def test_password_error_messages_cover_every_policy_code(locale: str) -> None:
    messages = password_errors(locale)

    assert set(messages) == {"406", "418", "419", "420", "421", "422"}
    assert all(isinstance(message, str) and message.strip() for message in messages.values())
    assert "{min_length}" in messages["418"]
    # Every message goes through str.format(min_length=...): no other placeholders, no stray braces.
    assert "12" in messages["418"].format(min_length=12)
    for message in messages.values():
        message.format(min_length=12)


def test_password_error_messages_have_the_same_codes_in_every_locale() -> None:
    english, german = (password_errors(locale) for locale in LOCALES)

    assert english.keys() == german.keys()
    assert all(english[code] != german[code] for code in english)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("de_DE", "de_DE"),
        ("de", "de_DE"),
        ("de-DE", "de_DE"),
        ("de_de", "de_DE"),
        ("DE_DE", "de_DE"),
        ("de-AT", "de_DE"),
        ("de_DE.UTF-8", "de_DE"),
        ("en-GB", "en_US"),
        ("fr_FR", "en_US"),
        ("", "en_US"),
        ("   ", "en_US"),
        (None, "en_US"),
    ],
)
def test_normalize_locale(value: str | None, expected: str) -> None:
    assert normalize_locale(value, SUPPORTED, "en_US") == expected


def test_normalize_locale_prefers_the_exact_region() -> None:
    supported = ["de_DE", "de_AT", "en_US"]

    assert normalize_locale("de-at", supported, "en_US") == "de_AT"
    assert normalize_locale("de-CH", supported, "en_US") == "de_DE"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("de-DE,de;q=0.9,en-US;q=0.8,en;q=0.7", "de_DE"),
        ("en-US,en;q=0.9,de;q=0.8", "en_US"),
        ("fr-FR,fr;q=0.9,de;q=0.8,en;q=0.5", "de_DE"),
        ("en;q=0.5, de;q=0.9", "de_DE"),
        ("de;q=0, en;q=0.1", "en_US"),
        ("fr, *;q=0.5", "en_US"),
        ("fr, it", "en_US"),
        ("de;q=banana, en", "en_US"),
        ("", "en_US"),
        (None, "en_US"),
    ],
)
def test_locale_from_accept_language(header: str | None, expected: str) -> None:
    assert locale_from_accept_language(header, SUPPORTED, "en_US") == expected


def test_accept_language_ties_keep_header_order() -> None:
    assert locale_from_accept_language("de, en", SUPPORTED, "en_US") == "de_DE"
    assert locale_from_accept_language("en, de", SUPPORTED, "de_DE") == "en_US"


async def test_smtp_round_trip_into_the_mail_sink(renderer: EmailRenderer, tmp_path: Path) -> None:
    echoed: list[str] = []
    who = customer(salutation="Mr", first_name="Jürgen", last_name="Müller")
    content = renderer.render_email("verify", "de_DE", context(customer=who, shop_name="Bäckerei Größe"))

    async with MailSink(store_dir=tmp_path, echo=echoed.append) as sink:
        settings = Settings(smtp_host="127.0.0.1", smtp_port=sink.port)
        await SmtpMailer.from_settings(settings).send(
            sender="Bäckerei Größe <no-reply@shop.example>",
            to="Jürgen Müller <Juergen@Example.com>",
            content=content,
            headers={"X-Registration-Id": "reg-1"},
        )
        received = await sink.wait_for(
            lambda message: "juergen@example.com" in [address.casefold() for address in message.to]
        )

        assert sink.to("JUERGEN@example.com") == [received]
        assert sink.messages == [received]

    assert received.sender == "no-reply@shop.example"
    assert received.subject == content.subject == "Bitte bestätigen Sie Ihre E-Mail-Adresse für Bäckerei Größe"
    assert received.text.replace("\r\n", "\n") == content.text
    assert received.html.replace("\r\n", "\n").rstrip("\n") == content.html.rstrip("\n")
    assert "Sehr geehrter Herr Müller," in received.text
    assert received.links == [LINK, "http://localhost:8000"]
    assert received.headers["X-Registration-Id"] == "reg-1"
    assert received.headers["Auto-Submitted"] == "auto-generated"

    stored = list(tmp_path.glob("*.eml"))
    assert len(stored) == 1
    assert "X-Registration-Id: reg-1" in stored[0].read_text("utf-8")
    readable = stored[0].with_suffix(".txt").read_text("utf-8")  # decoded: the link whole, on one line
    assert LINK in readable.splitlines() and f"Subject: {content.subject}" in readable.splitlines()

    assert len(echoed) == 1
    assert LINK in echoed[0].splitlines()
    assert content.subject in echoed[0]
    assert "Juergen@Example.com" in echoed[0]


async def test_an_address_that_is_not_ascii_travels_with_smtputf8(renderer: EmailRenderer) -> None:
    """Display names and subjects that are not ASCII are RFC 2047 words in an ASCII message (the test
    above); a local part that is not ASCII can only go as UTF-8 headers, announced with SMTPUTF8."""
    content = renderer.render_email("verify", "de_DE", context(customer=customer(first_name="Jürgen")))
    async with MailSink() as sink:
        settings = Settings(smtp_host="127.0.0.1", smtp_port=sink.port)
        await SmtpMailer.from_settings(settings).send(
            sender="Bäckerei <no-reply@shop.example>", to="jürgen@bäckerei.example", content=content
        )
        received = await sink.wait_for(lambda message: True)

    assert received.to == ["jürgen@bäckerei.example"]
    assert received.headers["To"] == "jürgen@bäckerei.example"
    assert received.subject == content.subject
    assert received.text.replace("\r\n", "\n") == content.text


def test_an_ascii_message_is_seven_bit_with_encoded_words() -> None:
    content = EmailContent(subject="Grüße aus der Bäckerei", text="Hallo Jürgen,\n", html="<p>Grüße</p>")
    raw = _mime_message(sender="Bäckerei <no-reply@shop.example>", to="juergen@example.com", content=content)

    assert raw.isascii()
    parsed = BytesParser(policy=email.policy.default).parsebytes(raw)
    assert parsed["Subject"] == "Grüße aus der Bäckerei"
    assert parsed["From"].addresses[0].display_name == "Bäckerei"
    assert parsed.get_content_type() == "multipart/alternative"
    plain, html = parsed.iter_parts()
    assert plain["Content-Transfer-Encoding"] == html["Content-Transfer-Encoding"] == "quoted-printable"
    assert plain.get_content() == "Hallo Jürgen,\r\n" and html.get_content() == "<p>Grüße</p>"  # SMTP's line ends


async def test_waiting_for_an_email_that_never_comes_says_what_did_arrive() -> None:
    content = EmailContent(subject="Something else", text="Hello\n", html="<p>Hello</p>")

    async with MailSink() as sink:
        await SmtpMailer("127.0.0.1", sink.port).send(
            sender="no-reply@shop.example", to="bob@example.com", content=content
        )
        await sink.wait_for(lambda message: True)

        with pytest.raises(TimeoutError, match=r"(?s)within 0\.2 s.*bob@example\.com: 'Something else'"):
            await sink.wait_for(lambda message: "anna@example.com" in message.to, timeout=0.2)


async def test_wait_for_also_returns_an_email_that_arrives_later() -> None:
    content = EmailContent(subject="Later", text="See http://localhost:8000/later.\n", html="<p>Later</p>")

    async with MailSink() as sink:
        waiting = asyncio.create_task(sink.wait_for(lambda message: message.subject == "Later"))
        await asyncio.sleep(0)
        await SmtpMailer("127.0.0.1", sink.port).send(
            sender="no-reply@shop.example", to="carol@example.com", content=content
        )
        received = await asyncio.wait_for(waiting, timeout=10)

    assert received.to == ["carol@example.com"]
    assert received.links == ["http://localhost:8000/later"]


async def test_the_stored_text_copy_has_unix_line_ends_so_a_link_read_from_it_is_clean(tmp_path: Path) -> None:
    link = "http://localhost:8000/register/confirm?token=" + "x" * 80  # longer than a quoted-printable line
    content = EmailContent(subject="Confirm", text=f"Hello,\n\nconfirm here:\n{link}\n\nThanks\n", html="<p>x</p>")

    async with MailSink(store_dir=tmp_path) as sink:
        await SmtpMailer("127.0.0.1", sink.port).send(
            sender="no-reply@shop.example", to="dan@example.com", content=content
        )
        await sink.wait_for(lambda message: True)

    (stored,) = tmp_path.glob("*.txt")
    assert b"\r" not in stored.read_bytes()
    # the README's recipe: cat the newest .txt, take the line with the link
    (read_link,) = [line for line in stored.read_text("utf-8").split("\n") if line.startswith("http")]
    assert read_link == link


@pytest.mark.parametrize("locale", LOCALES)
def test_the_mfa_code_stands_in_subject_text_and_html(renderer: EmailRenderer, locale: str) -> None:
    content = renderer.render_email("mfa_code", locale, context())
    assert "042917" in content.subject
    assert "\n042917\n" in content.text
    assert ">042917</p>" in content.html
    assert "30" in content.text


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("name", ["inactivity_reminder", "inactivity_warning"])
def test_inactivity_emails_name_the_deletion_date_unless_the_account_is_kept(
    renderer: EmailRenderer, name: str, locale: str
) -> None:
    deleted = renderer.render_email(name, locale, context())
    kept = renderer.render_email(name, locale, {k: v for k, v in context().items() if k != "due_at"})
    assert "2028" in deleted.text and "2028" in deleted.html
    assert "2028" not in kept.text and "2028" not in kept.html
    assert "http://localhost:8000/login" in kept.text


async def test_sends_reuse_an_idle_connection_and_open_a_new_one_when_the_server_dropped_it() -> None:
    content = EmailContent(subject="Hello", text="Hello\n", html="<p>Hello</p>")
    sink = MailSink("127.0.0.1", 0)
    await sink.start()
    port = sink.port
    mailer = SmtpMailer("127.0.0.1", port)
    try:
        for name in ("ann", "ben", "cem"):
            await mailer.send(sender="no-reply@shop.example", to=f"{name}@example.com", content=content)
        assert [m.to for m in sink.messages] == [["ann@example.com"], ["ben@example.com"], ["cem@example.com"]]
        assert sink.connections_accepted == 1  # one handshake for three emails

        # the server goes away and comes back (a restart): the idle connection is dead, the next send
        # notices and delivers over a new one
        await sink.stop()
        sink = MailSink("127.0.0.1", port)
        await sink.start()
        await mailer.send(sender="no-reply@shop.example", to="dee@example.com", content=content)
        assert [m.to for m in sink.messages] == [["dee@example.com"]] and sink.connections_accepted == 1

        # while it is down, a send fails as it always did (the activity retries), and nothing is kept
        await sink.stop()
        with pytest.raises(OSError):
            await mailer.send(sender="no-reply@shop.example", to="eve@example.com", content=content)
    finally:
        await sink.stop()


async def test_a_connection_whose_send_was_refused_is_not_reused() -> None:
    content = EmailContent(subject="Hello", text="Hello\n", html="<p>Hello</p>")

    def refuse(address: str) -> str | None:
        return "550 5.1.1 no such mailbox" if address.startswith("gone") else None

    async with MailSink(refuse_recipient=refuse) as sink:
        mailer = SmtpMailer("127.0.0.1", sink.port)
        with pytest.raises(MailRefused):
            await mailer.send(sender="no-reply@shop.example", to="gone@example.com", content=content)
        await mailer.send(sender="no-reply@shop.example", to="fay@example.com", content=content)
        await mailer.send(sender="no-reply@shop.example", to="gil@example.com", content=content)
        assert [m.to for m in sink.messages] == [["fay@example.com"], ["gil@example.com"]]
        assert sink.connections_accepted == 2  # the refused one closed; the next two shared one
