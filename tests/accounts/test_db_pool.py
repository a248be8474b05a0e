"""The PostgreSQL pool's check at checkout (accounts.db.checked_out_alive), which replaced pre-ping."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
from conftest import PG_ADMIN_DSN, Database
from sqlalchemy import text
from sqlalchemy.exc import InvalidatePoolError

from accounts.db import PING_AFTER_IDLE_SECONDS, checked_in, checked_out_alive, create_engine, session_factory


async def _backend_pid(sessions: Any) -> int:
    async with sessions.begin() as session:
        return int((await session.execute(text("select pg_backend_pid()"))).scalar_one())


async def _driver_connection(sessions: Any) -> Any:
    """The asyncpg connection the pool hands out now (returned to the pool on the way out)."""
    async with sessions.begin() as session:
        return (await (await session.connection()).get_raw_connection()).driver_connection


async def _until_closed(driver: Any) -> None:
    """The server's FATAL message and its closed socket reach the client a moment after the backend ends;
    in between, the driver has not seen it yet (a statement then fails, and the next checkout replaces it)."""
    for _ in range(500):
        if driver.is_closed():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the driver did not see the server close the connection within 5 s")


async def test_a_pooled_connection_its_server_closed_is_replaced_before_anyone_uses_it(
    postgres_database: Database,
) -> None:
    engine = create_engine(postgres_database.url, pool_size=1, max_overflow=0)
    sessions = session_factory(engine)
    try:
        first = await _backend_pid(sessions)
        assert await _backend_pid(sessions) == first  # the pool hands the same connection out again
        pooled = await _driver_connection(sessions)
        admin = await asyncpg.connect(PG_ADMIN_DSN)
        try:  # as a restart does: the server ends the session and closes its socket (waiting up to 5 s)
            assert await admin.fetchval("select pg_terminate_backend($1, 5000)", first)
        finally:
            await admin.close()
        await _until_closed(pooled)
        replaced = await _backend_pid(sessions)  # at once, not pinged: it was in use a moment ago
        assert replaced != first
        assert await _backend_pid(sessions) == replaced
    finally:
        await engine.dispose()


@dataclass
class _Driver:
    closed: bool = False

    def is_closed(self) -> bool:
        return self.closed


@dataclass
class _Adapted:
    """Stands in for SQLAlchemy's adapter around an asyncpg connection: `_connection` and `ping`."""

    _connection: _Driver = field(default_factory=_Driver)
    answers: bool = True
    pings: int = 0

    def ping(self) -> None:
        self.pings += 1
        if not self.answers:
            raise OSError("no answer")


@dataclass
class _Record:
    info: dict[str, Any] = field(default_factory=dict)


def _checked_in(seconds_ago: float) -> _Record:
    record = _Record()
    checked_in(None, record)  # the engine's checkin listener, as the pool calls it
    record.info = {key: stamp - seconds_ago for key, stamp in record.info.items()}
    return record


def test_a_connection_back_in_the_pool_moments_ago_is_handed_out_without_a_round_trip() -> None:
    connection = _Adapted()
    checked_out_alive(connection, _checked_in(0.0), None)
    checked_out_alive(connection, _Record(), None)  # opened just now: never checked in
    assert connection.pings == 0


def test_a_connection_idle_for_a_while_is_pinged_and_replaced_when_it_does_not_answer() -> None:
    idle = _checked_in(PING_AFTER_IDLE_SECONDS + 0.5)
    answering = _Adapted()
    checked_out_alive(answering, idle, None)
    assert answering.pings == 1
    with pytest.raises(InvalidatePoolError):
        checked_out_alive(_Adapted(answers=False), idle, None)


def test_a_connection_the_driver_saw_closed_is_replaced_without_a_ping() -> None:
    closed = _Adapted(_Driver(closed=True))
    with pytest.raises(InvalidatePoolError):
        checked_out_alive(closed, _checked_in(0.0), None)
    assert closed.pings == 0
