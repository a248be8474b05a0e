"""Database engine and sessions (SQLAlchemy 2.x async): SQLite by default, PostgreSQL through the same URL."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from accounts.settings import Settings

SessionFactory = async_sessionmaker[AsyncSession]
# How long one database step may wait: for a connection, and for a lock (SQLite's busy timeout, PostgreSQL's
# lock_timeout). Bounded so that the worker's graceful shutdown can outlast an activity (worker.py).
DATABASE_TIMEOUT = 30.0


# An unreachable database fails fast rather than hanging: a request then answers 503 by this error, well
# within ACCOUNTS_REQUEST_TIMEOUT (10 s), and a retried activity tries again soon. Together the two
# waits stay under that default.
CONNECT_TIMEOUT_SECONDS = 5
POOL_TIMEOUT_SECONDS = 4
# A pooled PostgreSQL connection idle this long is pinged before use; one in use moments ago is only
# checked for a closed socket (checked_out_alive).
PING_AFTER_IDLE_SECONDS = 1.0
_CHECKED_IN = "accounts_checked_in"  # the pool record's info key: when the connection last came back


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """hide_parameters: a database error's message must not carry emails or hashes into logs and
    Temporal failure messages (the codec encrypts those, with their stack traces, only while payload
    encryption is on; log lines are never encrypted)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        kwargs.setdefault("pool_timeout", POOL_TIMEOUT_SECONDS)
        if parsed.get_driver_name() != "asyncpg":  # another driver: SQLAlchemy's ping at every checkout
            return create_async_engine(url, pool_pre_ping=True, hide_parameters=True, **kwargs)
        lock_timeout = {"lock_timeout": f"{DATABASE_TIMEOUT:g}s"}
        kwargs.setdefault("connect_args", {"timeout": CONNECT_TIMEOUT_SECONDS, "server_settings": lock_timeout})
        engine = create_async_engine(url, hide_parameters=True, **kwargs)
        event.listen(engine.sync_engine, "checkout", checked_out_alive)
        event.listen(engine.sync_engine, "checkin", checked_in)
        return engine
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("pool_timeout", POOL_TIMEOUT_SECONDS)  # an in-memory database has one connection
    # Writers queue on SQLite's file lock instead of failing at once ("database is locked").
    engine = create_async_engine(url, connect_args={"timeout": DATABASE_TIMEOUT}, hide_parameters=True, **kwargs)

    @event.listens_for(engine.sync_engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(DATABASE_TIMEOUT * 1000)}")
        cursor.close()
        # SQLite's own lower() folds ASCII only: "ÖLMANN" would not find "Ölmann" in a search
        dbapi_connection.create_function("lower", 1, _lower, deterministic=True)

    return engine


def checked_out_alive(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """The pool's check of a connection it hands out: a dead one is replaced before anyone uses it.

    SQLAlchemy's `pool_pre_ping` pings every checkout, three round trips on asyncpg (BEGIN, `;`, ROLLBACK):
    a third of a short transaction's time, on every database step of a busy worker and API. A database that
    restarts or drops its connections closes their sockets, which the driver sees at once (asyncpg's
    `is_closed`); only a connection idle for a while, whose peer may have vanished without a word (a NAT, a
    failover), is pinged, as pre-ping pings. Raising InvalidatePoolError (a DisconnectionError) makes the
    pool drop it and every connection older than it, as pre-ping's failure does, and hand out a new one
    (SQLAlchemy's documented custom pessimistic check). A connection whose server ended it a moment ago,
    before the closed socket reached the driver, fails its one statement (a request answers 503, an activity
    retries), as it would have failed pre-ping's ping; by its next checkout the driver has seen it closed."""
    if dbapi_connection._connection.is_closed():  # asyncpg's connection under SQLAlchemy's adapter
        # a restart or an outage closes them all: replace every connection the pool held until now
        raise InvalidatePoolError("the connection was closed while it sat in the pool")
    checked_in = record.info.get(_CHECKED_IN)  # None: opened just now (the record's info starts empty)
    if checked_in is not None and time.monotonic() - checked_in > PING_AFTER_IDLE_SECONDS:
        try:
            dbapi_connection.ping()
        except Exception as error:
            raise InvalidatePoolError("the connection did not answer a ping") from error


def checked_in(_dbapi_connection: Any, record: Any) -> None:
    if record is not None:
        record.info[_CHECKED_IN] = time.monotonic()


def service_engine(settings: Settings) -> AsyncEngine:
    """The engine of a service process (the API, the worker): a pool of ACCOUNTS_DATABASE_POOL_SIZE
    connections kept open, plus up to ACCOUNTS_DATABASE_MAX_OVERFLOW opened for a burst and closed after.
    A worker checks that its activity slots fit (worker.check_database_capacity)."""
    return create_engine(settings.database_url, **pool_options(settings))


def pool_options(settings: Settings) -> dict[str, int]:
    database = make_url(settings.database_url).database
    if make_url(settings.database_url).get_backend_name() == "sqlite" and database in (None, "", ":memory:"):
        return {}  # one connection, no pool to size
    return {"pool_size": settings.database_pool_size, "max_overflow": settings.database_max_overflow}


def pool_capacity(settings: Settings) -> int:
    """Connections one process's engine can hand out at once without waiting."""
    return settings.database_pool_size + settings.database_max_overflow


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def session_factory(engine: AsyncEngine) -> SessionFactory:
    return async_sessionmaker(engine, expire_on_commit=False)
