"""Customer emails and storefront pages in three seams: content, rendering (Jinja) and transport (SMTP).

``EmailRenderer`` turns a message name, a locale and a context into an ``EmailContent`` (subject, text
and HTML) from ``templates/emails/<locale>/<name>.{subject.txt,txt,html}.j2``, and renders the small
storefront pages under ``templates/pages/<locale>/``. A ``Mailer`` delivers the content: ``SmtpMailer``
in production, and in development and tests the same class pointed at ``devstack.mailsink.MailSink``.

A mailer tells the two kinds of failure apart: ``MailRefused`` when the receiving server refused the
message for good (a 5xx reply to RCPT or DATA: no such user, mailbox disabled, content rejected), which no
retry can change; ``MailDeferred`` for its temporary 4xx replies. Connection errors and timeouts pass as they
are. Both carry the reply with any address in it masked, since failure messages reach Temporal and logs.
"""

from __future__ import annotations

import asyncio
import email.policy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.charset import QP, Charset
from email.header import Header
from email.message import EmailMessage
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.utils import format_datetime, formataddr, make_msgid, parseaddr
from pathlib import Path
from typing import Any, Literal, Protocol

import aiosmtplib
from jinja2 import Environment, FileSystemLoader, StrictUndefined, pass_context, select_autoescape
from jinja2.runtime import Context

from accounts.locales import normalize_locale
from accounts.settings import Settings

_TEMPLATE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class EmailContent:
    subject: str
    text: str
    html: str


class EmailRenderer:
    """Renders the email triples and storefront pages, falling back to ``default_locale`` per template."""

    def __init__(self, templates_dir: Path, *, default_locale: str = "en_US") -> None:
        self._templates_dir = templates_dir
        self._default_locale = default_locale
        self._env = Environment(
            loader=FileSystemLoader(templates_dir),
            # Unknown extensions are escaped too: forgetting to escape is the mistake that hurts.
            autoescape=select_autoescape(
                enabled_extensions=("html.j2", "html"),
                disabled_extensions=("txt.j2", "txt"),
                default_for_string=True,
                default=True,
            ),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._env.filters["datetime"] = _datetime_filter
        self._env.globals["greeting"] = _greeting
        # Only directories that exist are candidates, so a customer's locale never becomes a path.
        self._locales = {kind: _locale_dirs(templates_dir / kind, first=default_locale) for kind in ("emails", "pages")}

    def has_email(self, name: str) -> bool:
        subject = self._templates_dir / "emails" / self._default_locale / f"{name}.subject.txt.j2"
        return bool(_TEMPLATE_NAME.match(name)) and subject.is_file()

    def render_email(self, name: str, locale: str, context: Mapping[str, Any]) -> EmailContent:
        template_locale = self._template_locale("emails", name, ".subject.txt.j2", locale)
        prefix = f"emails/{template_locale}/{name}"
        variables = {**context, "locale": template_locale}
        text = self._env.get_template(f"{prefix}.txt.j2").render(variables)
        html = self._env.get_template(f"{prefix}.html.j2").render(variables)
        return EmailContent(subject=self._subject(prefix, variables), text=text.strip() + "\n", html=html)

    def render_subject(self, name: str, locale: str, context: Mapping[str, Any]) -> str:
        """The subject alone (a data export lists the subjects of the emails sent: the outbox keeps no body)."""
        template_locale = self._template_locale("emails", name, ".subject.txt.j2", locale)
        return self._subject(f"emails/{template_locale}/{name}", {**context, "locale": template_locale})

    def _subject(self, prefix: str, variables: Mapping[str, Any]) -> str:
        subject = self._env.get_template(f"{prefix}.subject.txt.j2").render(variables)
        # A subject is a single header line: template line breaks would be a header injection.
        return " ".join(subject.split())

    def render_page(self, name: str, locale: str, context: Mapping[str, Any]) -> str:
        template_locale = self._template_locale("pages", name, ".html.j2", locale)
        template = self._env.get_template(f"pages/{template_locale}/{name}.html.j2")
        return template.render({**context, "locale": template_locale})

    def _template_locale(self, kind: str, name: str, suffix: str, locale: str) -> str:
        candidate = normalize_locale(locale, self._locales[kind], self._default_locale)
        if (self._templates_dir / kind / candidate / f"{_checked_name(name)}{suffix}").is_file():
            return candidate
        return self._default_locale


def _locale_dirs(directory: Path, *, first: str) -> list[str]:
    if not directory.is_dir():
        return []
    names = [entry.name for entry in directory.iterdir() if entry.is_dir() and not entry.name.startswith("_")]
    # A bare language ("en") should land on the default locale when it speaks that language.
    return sorted(names, key=lambda name: (name != first, name))


def _checked_name(name: str) -> str:
    if not _TEMPLATE_NAME.match(name):
        raise ValueError(f"not a template name: {name!r}")
    return name


def _greeting(customer: Mapping[str, Any], forms: Mapping[str, Any]) -> str:
    """``{{ greeting(customer, greetings) }}``: by title and last name, else by first name, else neutral.

    The wording comes from the locale's ``_phrases.j2``; the choice lives here, once, because a Jinja
    macro shared by the text and HTML layouts would be compiled without escaping for one of them.
    """
    first_name = (customer["first_name"] or "").strip()
    last_name = (customer["last_name"] or "").strip()
    titles: Mapping[str, str] = forms["titles"]
    if customer["salutation"] in titles and last_name:
        form = titles[customer["salutation"]]
    elif first_name:
        form = forms["first_name"]
    else:
        form = forms["neutral"]
    return str(form).format(first_name=first_name, last_name=last_name)


_ENGLISH_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def _english_datetime(moment: datetime) -> str:
    month = _ENGLISH_MONTHS[moment.month - 1]
    return f"{month} {moment.day}, {moment.year} at {moment:%H:%M} {moment.tzname()}"


def _german_datetime(moment: datetime) -> str:
    return f"{moment:%d.%m.%Y, %H:%M} {moment.tzname()}"


def _iso_datetime(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} {moment.tzname()}"


# A language without a format here gets the unambiguous ISO form rather than a wrong English one.
_DATETIME_FORMATS: dict[str, Callable[[datetime], str]] = {"en": _english_datetime, "de": _german_datetime}


@pass_context
def _datetime_filter(context: Context, moment: datetime) -> str:
    """``{{ expires_at | datetime }}`` in the rendered template's locale, in the datetime's own zone."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"the datetime filter needs an aware datetime, got {moment!r}")
    language = str(context.get("locale", "")).partition("_")[0]
    return _DATETIME_FORMATS.get(language, _iso_datetime)(moment)


_ADDRESS = re.compile(r"[^\s<>\"'(),;:]+@[^\s<>\"'(),;:]+")
REPLY_LENGTH = 200  # of the SMTP reply kept with a bounce (the outbox column's size)


class MailFailure(Exception):
    """An SMTP reply refusing the message, with addresses masked and the text cut to REPLY_LENGTH."""

    def __init__(self, code: int, reply: str) -> None:
        self.code = code
        self.reply = _ADDRESS.sub("<address>", " ".join(reply.split()))[:REPLY_LENGTH]
        super().__init__(f"{code} {self.reply}")


class MailRefused(MailFailure):
    """A permanent refusal (5xx to RCPT or DATA): the message can never be delivered to this recipient."""


class MailDeferred(MailFailure):
    """Any other refusal: a temporary 4xx, or a 5xx to the session itself (sender, login), which means the
    configuration is wrong for every message, not that this one is undeliverable; it is worth a retry."""


class Mailer(Protocol):
    """Delivers one message; raises MailRefused when the server refuses it for good, else any error to retry."""

    async def send(
        self,
        *,
        sender: str,
        to: str,
        content: EmailContent,
        headers: Mapping[str, str] | None = None,
    ) -> None: ...


class SmtpMailer:
    """Sends each email as multipart/alternative (text, then HTML) over SMTP, reusing idle connections.

    A connection that just delivered a message waits for the next one for up to IDLE_SECONDS (at most
    MAX_IDLE of them): no TCP and TLS handshake, EHLO and login per email. One that fails is closed, never
    reused; one the server dropped while idle is found out by the next send, which then opens a new one
    (a refusal or a timeout on a fresh connection is the send's answer, as before)."""

    MAX_IDLE = 4  # the email queues' activity slots by default: one each
    IDLE_SECONDS = 20.0  # well under the idle timeouts of SMTP servers (Postfix 300 s, providers 30-60 s)

    def __init__(
        self,
        host: str,
        port: int,
        *,
        username: str | None = None,
        password: str | None = None,
        tls: Literal["none", "starttls", "tls"] = "none",
        timeout: float = 30.0,
    ) -> None:
        self._host = host
        self._port = port
        self._username = username
        self._password = password
        self._tls = tls
        self._timeout = timeout
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []  # connection, when it went idle (monotonic)

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpMailer:
        host, port = settings.smtp_target
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        return cls(
            host,
            port,
            username=settings.smtp_username,
            password=password,
            tls=settings.smtp_tls,
            timeout=settings.smtp_timeout,
        )

    async def send(
        self,
        *,
        sender: str,
        to: str,
        content: EmailContent,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        from_address, to_address = parseaddr(sender)[1], parseaddr(to)[1]
        envelope = (from_address, [to_address])
        # an address that is not ASCII can only travel with SMTPUTF8
        utf8 = not (from_address.isascii() and to_address.isascii())
        message = _mime_message(sender=sender, to=to, content=content, headers=headers, utf8=utf8)
        options = ["SMTPUTF8"] if utf8 else []
        try:
            # aiosmtplib's timeout bounds each command; the whole handover gets the same bound, so that
            # ACCOUNTS_SMTP_TIMEOUT is what a send can take at most (the worker's shutdown waits that long).
            async with asyncio.timeout(self._timeout):
                connection = self._take_idle()
                if connection is not None:
                    try:
                        await connection.sendmail(*envelope, message, mail_options=options)
                    except (aiosmtplib.SMTPServerDisconnected, ConnectionError):
                        connection.close()  # dropped while idle: this send goes over a new connection
                    except BaseException:
                        connection.close()
                        raise
                    else:
                        self._keep(connection)
                        return
                connection = await self._connect()
                try:
                    await connection.sendmail(*envelope, message, mail_options=options)
                except BaseException:
                    connection.close()
                    raise
                self._keep(connection)
        except aiosmtplib.SMTPRecipientsRefused as error:
            # one recipient per message: its refusal is the message's
            refused = error.recipients[0]
            raise _failure(refused.code, refused.message, permanent_if_5xx=True) from None
        except (aiosmtplib.SMTPRecipientRefused, aiosmtplib.SMTPDataError) as error:
            raise _failure(error.code, error.message, permanent_if_5xx=True) from None
        except aiosmtplib.SMTPResponseException as error:
            raise _failure(error.code, error.message, permanent_if_5xx=False) from None

    async def _connect(self) -> aiosmtplib.SMTP:
        connection = aiosmtplib.SMTP(
            hostname=self._host,
            port=self._port,
            username=self._username,
            password=self._password,
            use_tls=self._tls == "tls",
            # aiosmtplib upgrades opportunistically when left to decide; "none" must mean none.
            start_tls=self._tls == "starttls",
            timeout=self._timeout,
        )
        await connection.connect()
        return connection

    def _take_idle(self) -> aiosmtplib.SMTP | None:
        """The most recently used idle connection still young enough; older ones are closed."""
        now = asyncio.get_running_loop().time()
        while self._idle:
            connection, since = self._idle.pop()
            if now - since < self.IDLE_SECONDS and connection.is_connected:
                return connection
            connection.close()
        return None

    def _keep(self, connection: aiosmtplib.SMTP) -> None:
        now = asyncio.get_running_loop().time()
        for aged in [entry for entry in self._idle if now - entry[1] >= self.IDLE_SECONDS]:
            self._idle.remove(aged)
            aged[0].close()
        if len(self._idle) >= self.MAX_IDLE or not connection.is_connected:
            connection.close()
            return
        self._idle.append((connection, now))


def _failure(code: int, reply: str, *, permanent_if_5xx: bool) -> MailFailure:
    # "from None" at the raise: the original exception's text would carry the address unmasked
    return (MailRefused if permanent_if_5xx and 500 <= code < 600 else MailDeferred)(code, reply)


def _mime_message(
    *, sender: str, to: str, content: EmailContent, headers: Mapping[str, str] | None = None, utf8: bool = False
) -> bytes:
    """The message as bytes for SMTP's DATA; `utf8` when it goes with SMTPUTF8 (an address that is not ASCII).

    multipart/alternative, text then HTML, quoted-printable UTF-8: that keeps long links within SMTP's
    line limit and needs no 8BITMIME from the server. ASCII addresses (nearly all) take the email package's
    compat32 classes, a quarter of EmailMessage's cost on the path of every email (its header registry
    parses each header as it is set, and again as it is written); a subject or display name that is not
    ASCII is RFC 2047-encoded there. An address that is not ASCII can only travel with SMTPUTF8, as UTF-8
    headers (RFC 6532), which EmailMessage writes."""
    values = {
        "From": sender,
        "To": to,
        "Subject": content.subject,
        "Date": format_datetime(datetime.now(UTC)),
        # Without a domain make_msgid asks DNS for this host's FQDN, which can stall for seconds.
        "Message-ID": make_msgid(domain=parseaddr(sender)[1].rpartition("@")[2] or "localhost"),
        # RFC 3834: tells autoresponders (out-of-office replies) not to answer.
        "Auto-Submitted": "auto-generated",
    }
    for name, value in (headers or {}).items():
        # A caller's header replaces a same-named default instead of duplicating it.
        values = {key: kept for key, kept in values.items() if key.lower() != name.lower()}
        values[name] = value
    if not utf8:
        message = MIMEMultipart("alternative")
        for name, value in values.items():
            message[name] = _ascii_header(name, value)  # type: ignore[assignment]  # compat32 folds a Header
        for subtype, body in (("plain", content.text), ("html", content.html)):
            part = MIMENonMultipart("text", subtype)
            part.set_payload(body, _UTF8_QP)
            message.attach(part)
        return message.as_bytes(policy=_COMPAT32_SMTP)
    utf8_message = EmailMessage(policy=email.policy.SMTPUTF8)
    for name, value in values.items():
        utf8_message[name] = value
    utf8_message.set_content(content.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    utf8_message.add_alternative(content.html, subtype="html", charset="utf-8", cte="quoted-printable")
    return utf8_message.as_bytes()


_UTF8_QP = Charset("utf-8")
_UTF8_QP.body_encoding = QP
_COMPAT32_SMTP = email.policy.compat32.clone(linesep="\r\n")


def _ascii_header(name: str, value: str) -> str | Header:
    """A header value as compat32 writes it: as it is when ASCII, else RFC 2047 (an address's display
    name alone, so that the address stays readable to the server)."""
    if value.isascii():
        return value
    if name in ("From", "To", "Reply-To"):
        display, address = parseaddr(value)
        return formataddr((display, address), charset="utf-8")
    return Header(value, "utf-8", header_name=name)
