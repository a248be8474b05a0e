"""A lean HTTP/1.1 client for bursts, as wrk or h2load are: what it measures is the server, not itself.

httpx spends about half a millisecond of its event loop on each request; 200 of them at once put the
last one's send 100 ms behind the first, and that wait would be counted as the server's. Here each
connection is opened before the burst, the request is encoded once, and an answer costs a read of its
head and of the Content-Length bytes that follow (uvicorn always sends one): a few microseconds each.
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def post_request(url: str, path: str, document: Any, headers: dict[str, str] | None = None) -> bytes:
    """The bytes of one keep-alive POST of `document` as JSON."""
    parts = urlsplit(url)
    body = json.dumps(document).encode()
    lines = [f"POST {path} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, url: str, local_address: str | None = None) -> Connection:
        parts = urlsplit(url)
        local = (local_address, 0) if local_address else None
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port, local_addr=local)
        return cls(reader, writer)

    async def send(self, request: bytes) -> Answer:
        self._writer.write(request)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await self._reader.readexactly(int(headers.get("content-length", "0")))
        return Answer(int(status_line.split(" ", 2)[1]), headers, body)

    async def close(self) -> None:
        self._writer.close()
        await self._writer.wait_closed()


async def burst(connections: list[Connection], requests: list[bytes], timeout: float) -> list[tuple[int, float]]:
    """Each request on its connection, all sent at the same moment (the tasks wait at one gate): each
    answer's status and seconds from that moment. The client's own collector is run before and kept out
    during the burst: a full collection of this process in the middle of one (the attack client holds
    every answer so far) delayed all 200 requests by some 190 ms, charged to the server (seen as a second
    burst of p50 126-148 ms, where the server had answered each refusal in 0.04 ms)."""
    gc.collect()
    gc.disable()
    try:
        return await _burst(connections, requests, timeout)
    finally:
        gc.enable()


async def _burst(connections: list[Connection], requests: list[bytes], timeout: float) -> list[tuple[int, float]]:
    gate = asyncio.Event()

    async def one(connection: Connection, request: bytes) -> tuple[int, float]:
        await gate.wait()
        started = time.perf_counter()
        answer = await asyncio.wait_for(connection.send(request), timeout)
        return answer.status, time.perf_counter() - started

    tasks = [asyncio.ensure_future(one(c, r)) for c, r in zip(connections, requests, strict=True)]
    await asyncio.sleep(0)  # every task at the gate
    gate.set()
    return list(await asyncio.gather(*tasks))


FLOOR_BODY = json.dumps(
    {"errors": [{"status": 429, "code": "4401", "detail": "Too many failed sign-ins. Please try again in 1 minute."}]}
).encode()


async def floor_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The floor of a burst of refusals: an ASGI app under the same uvicorn that answers every request at
    once with a refusal's size, reading its body first, as the real one does (`uvicorn rawhttp:floor_app`)."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body", False):
        pass
    headers = [(b"content-type", b"application/vnd.api+json"), (b"content-length", str(len(FLOOR_BODY)).encode())]
    await send({"type": "http.response.start", "status": 429, "headers": headers})
    await send({"type": "http.response.body", "body": FLOOR_BODY})
