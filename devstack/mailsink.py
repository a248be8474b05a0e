"""An SMTP server that keeps every email it receives, for ``accounts dev`` and the tests.

It runs on the current asyncio loop (aiosmtpd's ``SMTP`` protocol served with ``loop.create_server``),
so tests can ``await sink.wait_for(...)`` an email without threads, and ``accounts dev`` can print each
confirmation link to the console and keep a copy as an ``.eml`` file, with its text part decoded beside it
in a ``.txt`` file (the ``.eml`` is quoted-printable, which breaks long links).

Tests inject the faults of a real mail server through the constructor: ``refuse_recipient`` answers RCPT
for chosen addresses with a reply of its choice (``"550 5.1.1 no such user"``, ``"451 4.7.1 try later"``),
``refuse_data`` does the same at the end of DATA, and ``data_reply_delay`` keeps the client waiting for the
DATA reply after the message is stored (the moment a cut connection makes a sender send twice).
"""

from __future__ import annotations

import asyncio
import email.policy
import re
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from types import TracebackType

from aiosmtpd.smtp import SMTP, Envelope, Session

# Stops at whitespace and at the characters that commonly wrap a link in prose or markup.
_LINK = re.compile(r"""https?://[^\s<>"'()\[\]]+""")
_TRAILING_PUNCTUATION = ".,;:!?"
_LISTED_ON_TIMEOUT = 20
Refusal = Callable[[str], str | None]
"""Given a recipient address: the SMTP reply that refuses it (``"550 5.1.1 no such user"``), or None to accept."""


@dataclass
class ReceivedEmail:
    sender: str
    to: list[str]
    subject: str
    text: str
    html: str
    headers: dict[str, str]
    links: list[str]
    """The http(s) links in the text part, in order."""
    received_at: datetime


class MailSink:
    """Accepts every email over SMTP and keeps it in memory, optionally on disk and echoed."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        store_dir: Path | None = None,
        echo: Callable[[str], None] | None = None,
        refuse_recipient: Refusal | None = None,
        refuse_data: Refusal | None = None,
        data_reply_delay: float = 0.0,
    ) -> None:
        self._host = host
        self._port = port
        self._store_dir = store_dir
        self._echo = echo
        self._refuse_recipient = refuse_recipient
        self._refuse_data = refuse_data
        self._data_reply_delay = data_reply_delay
        self._messages: list[ReceivedEmail] = []
        self._received = 0
        self._arrived = asyncio.Condition()
        self._server: asyncio.Server | None = None
        self._connections: weakref.WeakSet[SMTP] = weakref.WeakSet()
        self.connections_accepted = 0  # SMTP connections opened to this sink, over its life

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("the mail sink is already running")
        if self._store_dir is not None:
            self._store_dir.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        handler = _Handler(self._receive, self._refuse_recipient, self._refuse_data, self._data_reply_delay)

        def connection() -> SMTP:
            # An explicit hostname: aiosmtpd would otherwise ask DNS for this host's FQDN per connection.
            protocol = SMTP(handler, hostname="localhost", enable_SMTPUTF8=True, loop=loop)
            self._connections.add(protocol)
            self.connections_accepted += 1
            return protocol

        self._server = await loop.create_server(connection, host=self._host, port=self._port)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        # A client that never says QUIT would otherwise keep its connection (and wait_closed) alive.
        for protocol in list(self._connections):
            if protocol.transport is not None:
                protocol.transport.close()
        self._connections.clear()
        await server.wait_closed()

    async def __aenter__(self) -> MailSink:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        """The bound port once started (the one picked for port 0), else the configured one."""
        if self._server is None or not self._server.sockets:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def messages(self) -> list[ReceivedEmail]:
        return list(self._messages)

    def to(self, address: str) -> list[ReceivedEmail]:
        wanted = address.casefold()
        return [message for message in self._messages if wanted in (r.casefold() for r in message.to)]

    async def wait_for(self, predicate: Callable[[ReceivedEmail], bool], *, timeout: float = 10.0) -> ReceivedEmail:
        """The oldest email received so far, or the next to arrive, for which ``predicate`` is true.

        Each email is looked at once: after a wake-up only those that arrived since (a sink that holds
        hundreds, with many waiters woken by every arrival, would otherwise cost each waiter all of them)."""
        async with self._arrived:
            try:
                async with asyncio.timeout(timeout):
                    looked_at = 0
                    while True:
                        for message in self._messages[looked_at:]:
                            if predicate(message):
                                return message
                        looked_at = len(self._messages)
                        await self._arrived.wait()
            except TimeoutError:
                raise TimeoutError(self._nothing_matched(timeout)) from None

    def _nothing_matched(self, timeout: float) -> str:
        summary = f"no email matching the predicate arrived at the mail sink within {timeout:g} s"
        if not self._messages:
            return f"{summary}; no email arrived at all"
        # A session-long sink can hold hundreds of emails; the latest are the ones a failing test sent.
        latest = self._messages[-_LISTED_ON_TIMEOUT:]
        arrived = "\n".join(f"  to {', '.join(m.to)}: {m.subject!r}" for m in latest)
        count = f"{len(self._messages)} did"
        if len(latest) < len(self._messages):
            count += f", the latest {len(latest)} of them"
        return f"{summary}; {count}:\n{arrived}"

    async def _receive(self, envelope: Envelope) -> None:
        raw: bytes = envelope.original_content or b""
        message = _parse(envelope, raw)
        # Counted before any await, so two emails arriving together still get different numbers.
        self._received += 1
        if self._store_dir is not None:
            stem = self._store_dir / f"{message.received_at:%Y%m%dT%H%M%S%fZ}-{self._received}"
            await asyncio.to_thread(stem.with_suffix(".eml").write_bytes, raw)
            # the .eml is quoted-printable (links broken at 76 characters); the .txt is the text part, decoded
            # "\n" whatever the platform: a link read from the file with `cat` must not end in "\r"
            await asyncio.to_thread(
                stem.with_suffix(".txt").write_text, _readable(message), encoding="utf-8", newline="\n"
            )
        async with self._arrived:
            self._messages.append(message)
            self._arrived.notify_all()
        if self._echo is not None:
            self._echo(_summary(message))


class _Handler:
    """The aiosmtpd handler, which finds its hooks by their ``handle_*`` names."""

    def __init__(
        self,
        receive: Callable[[Envelope], Awaitable[None]],
        refuse_recipient: Refusal | None,
        refuse_data: Refusal | None,
        data_reply_delay: float,
    ) -> None:
        self._receive = receive
        self._refuse_recipient = refuse_recipient
        self._refuse_data = refuse_data
        self._data_reply_delay = data_reply_delay

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        refusal = self._refuse_recipient(address) if self._refuse_recipient else None
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        refuse = self._refuse_data
        refusals = [reply for address in envelope.rcpt_tos if refuse and (reply := refuse(address))]
        if refusals:
            return refusals[0]
        await self._receive(envelope)
        if self._data_reply_delay:
            await asyncio.sleep(self._data_reply_delay)
        return "250 Message accepted for delivery"


def _parse(envelope: Envelope, raw: bytes) -> ReceivedEmail:
    parsed = BytesParser(policy=email.policy.default).parsebytes(raw)
    text = _body(parsed, "plain")
    headers: dict[str, str] = {}
    for name, value in parsed.items():
        # Keep the first of a repeated header (Received:, say), as mail clients show it.
        headers.setdefault(name, str(value))
    return ReceivedEmail(
        sender=envelope.mail_from or "",
        to=list(envelope.rcpt_tos),
        subject=str(parsed["Subject"] or ""),
        text=text,
        html=_body(parsed, "html"),
        headers=headers,
        links=[link.rstrip(_TRAILING_PUNCTUATION) for link in _LINK.findall(text)],
        received_at=datetime.now(UTC),
    )


def _body(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    if part is None:
        return ""
    content = part.get_content()
    return content if isinstance(content, str) else content.decode("utf-8", "replace")


def _readable(message: ReceivedEmail) -> str:
    text = message.text.replace("\r\n", "\n")  # SMTP's CRLF line ends, decoded from the wire
    return f"To: {', '.join(message.to)}\nSubject: {message.subject}\n\n{text}"


def _summary(message: ReceivedEmail) -> str:
    # Links go on lines of their own, unindented, so a terminal can make them clickable and copyable.
    lines = [f"Email to {', '.join(message.to)}", f"Subject: {message.subject}", *message.links]
    return "\n".join(lines)
