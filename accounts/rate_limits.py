"""Request budgets: how much unauthenticated work one client, one address and everyone together may ask for.

A budget is a fixed window counted in the database (`request_counts`), taken with one conditional
UPDATE like the lockout counters (accounts.throttle): below the limit, or past the window's end, the
request counts and goes on; otherwise `OverBudget` says how long until the window ends. Refused
requests change nothing, so a flood costs one UPDATE and one SELECT each, and no workflow.

With ACCOUNTS_RATE_LIMIT_REDIS_URL set, the same windows live in Redis instead (`RedisCounter`: one Lua
script per request, the window a key's expiry), for shops whose traffic would make one database row per
kind hot; the database then holds no request counts.

Subjects name what they count by a keyed hash (`ip:<kind>:<hash>`, `address:<kind>:<hash>`) or by the
kind alone (`all:<kind>`): the table holds no address. IPv6 clients are counted by their network
(`client_network`), since one subscriber usually holds a whole /64.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy import case, delete, or_, select, update
from sqlalchemy.exc import IntegrityError

from accounts.db import SessionFactory
from accounts.models import LoginThrottle, RequestCount, utcnow
from accounts.settings import Settings
from accounts.throttle import keyed_subject

# the kinds of request that have budgets of their own
REGISTER = "register"
FORGOTTEN_PASSWORD = "reset"  # noqa: S105 (a kind of request, no secret)
SIGN_IN = "sign-in"
EMAIL_CHANGE = "email-change"
VERIFICATION_RESEND = "resend"
STAFF_SIGN_IN = "staff-sign-in"
HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Budget:
    limit: int  # requests per window; 0: no limit
    window: timedelta


class OverBudget(Exception):
    def __init__(self, subject: str, retry_after: timedelta) -> None:
        super().__init__(f"{subject.partition(':')[0]} budget spent")
        self.subject = subject
        self.retry_after = retry_after

    @property
    def retry_after_seconds(self) -> int:
        return max(1, -int(-self.retry_after.total_seconds() // 1))


def client_network(host: str, ipv6_prefix: int) -> str:
    """What per-IP counting names a client by: the IPv4 address, or the IPv6 network of `ipv6_prefix` bits
    (an IPv4-mapped IPv6 address is its IPv4 address). Anything that is no IP address stays as it is."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, ipv6_prefix), strict=False))
    return str(address)


class Counter(Protocol):
    async def spend(self, subject: str, budget: Budget) -> int: ...

    async def close(self) -> None: ...


class DatabaseCounter:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    async def spend(self, subject: str, budget: Budget) -> int:
        return await spend(self._sessions, subject, budget)

    async def close(self) -> None:
        pass


# KEYS[1] the subject, ARGV[1] the limit, ARGV[2] the window in ms. Atomic in Redis: below the limit
# count (the first request of a window sets its expiry), else answer minus the milliseconds left.
_SPEND = """
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count >= tonumber(ARGV[1]) then
  local left = redis.call('PTTL', KEYS[1])
  if left < 1 then left = 1 end
  return -left
end
count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return count
"""


class RedisCounter:
    """The same fixed windows in Redis (the `redis` extra): a key per subject that expires with its window."""

    def __init__(self, url: str) -> None:
        try:
            import redis.asyncio  # only where a Redis URL is configured: the package is an extra
        except ImportError as missing:
            raise RuntimeError(
                "ACCOUNTS_RATE_LIMIT_REDIS_URL needs the redis extra: pip install 'shop-accounts[redis]'"
            ) from missing
        self._redis: Any = redis.asyncio.Redis.from_url(url)
        self._script = self._redis.register_script(_SPEND)

    async def spend(self, subject: str, budget: Budget) -> int:
        if budget.limit <= 0:
            return 0
        window_ms = max(1, int(budget.window.total_seconds() * 1000))
        answer = int(await self._script(keys=[f"accounts:{subject}"], args=[budget.limit, window_ms]))
        if answer < 0:
            raise OverBudget(subject, timedelta(milliseconds=-answer))
        return answer

    async def close(self) -> None:
        await self._redis.aclose()


class RefusalMemo:
    """Subjects this process saw refused, until their window ends: a flood from one client is answered
    from memory after its first refusal, with no database round trip (a window cannot reopen before its
    end, so this never refuses what the counter would admit)."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._until: dict[str, float] = {}
        self._max_entries = max_entries

    def refused(self, subject: str) -> OverBudget | None:
        until = self._until.get(subject)
        if until is None:
            return None
        left = until - time.monotonic()
        if left <= 0:
            del self._until[subject]
            return None
        return OverBudget(subject, timedelta(seconds=left))

    def remember(self, refusal: OverBudget) -> None:
        if len(self._until) >= self._max_entries:
            now = time.monotonic()
            self._until = {s: u for s, u in self._until.items() if u > now}
            if len(self._until) >= self._max_entries:  # a flood of distinct subjects: start over
                self._until.clear()
        self._until[refusal.subject] = time.monotonic() + refusal.retry_after.total_seconds()


class RequestLimits:
    """The budgets of the settings, by kind: per client network, for everyone, and per address typed."""

    def __init__(self, settings: Settings, sessions: SessionFactory) -> None:
        url = settings.rate_limit_redis_url
        self._counter: Counter = RedisCounter(url) if url else DatabaseCounter(sessions)
        self._secret = settings.secret_key.get_secret_value()
        self.per_ip = Budget(settings.rate_limit_per_ip, settings.rate_limit_window)
        self.all_clients = Budget(settings.rate_limit_global, settings.rate_limit_window)
        self.per_address = Budget(settings.address_requests_per_hour, HOUR)
        self._memo = RefusalMemo()
        # one count at a time per subject in this process: a burst from one client waits here, holding no
        # database connection, instead of queueing N connections on one row's lock; once the budget is
        # spent the rest of the burst is refused from the memo
        self._queues: dict[str, tuple[asyncio.Lock, int]] = {}

    async def admit_client(self, kind: str, client: str) -> None:
        """One request of `kind` from the client network `client` (see client_network); raises OverBudget.

        The client's own budget first: one client past its limit does not eat into everyone's."""
        await self._spend(keyed_subject(f"ip:{kind}", client, self._secret), self.per_ip)
        await self._spend(f"all:{kind}", self.all_clients)

    async def admit_address(self, kind: str, address: str) -> None:
        """One request of `kind` naming `address`, counted before anyone looks the address up, so the answer
        is the same whether or not it has an account; raises OverBudget."""
        await self._spend(keyed_subject(f"address:{kind}", address.strip().casefold(), self._secret), self.per_address)

    async def _spend(self, subject: str, budget: Budget) -> None:
        if (refusal := self._memo.refused(subject)) is not None:
            raise refusal
        lock, users = self._queues.get(subject) or (asyncio.Lock(), 0)
        self._queues[subject] = (lock, users + 1)
        try:
            async with lock:
                if (refusal := self._memo.refused(subject)) is not None:
                    raise refusal
                try:
                    await self._counter.spend(subject, budget)
                except OverBudget as refused:
                    self._memo.remember(refused)
                    raise
        finally:
            lock, users = self._queues[subject]
            if users == 1:
                del self._queues[subject]
            else:
                self._queues[subject] = (lock, users - 1)

    async def close(self) -> None:
        await self._counter.close()


async def spend(sessions: SessionFactory, subject: str, budget: Budget) -> int:
    """Count one request against `subject`'s window, opening a new window when none is open; returns the
    count including this one, or raises OverBudget without counting."""
    if budget.limit <= 0:
        return 0
    table = RequestCount
    for _ in range(3):
        now = utcnow()
        ended = table.window_ends_at <= now
        async with sessions.begin() as session:
            # a plain read first: a spent budget refuses without a write (and without waiting for the row
            # lock that the requests being admitted take)
            seen = (
                await session.execute(select(table.count, table.window_ends_at).where(table.subject == subject))
            ).one_or_none()
            if seen is not None:
                seen_count, seen_ends_at = seen  # by position: a Row's `count` is tuple.count
                if seen_ends_at > now and seen_count >= budget.limit:
                    raise OverBudget(subject, seen_ends_at - now)
            count = await session.scalar(
                update(table)
                .where(table.subject == subject, or_(ended, table.count < budget.limit))
                .values(
                    count=case((ended, 1), else_=table.count + 1),
                    window_ends_at=case((ended, now + budget.window), else_=table.window_ends_at),
                )
                .returning(table.count)
            )
            if count is not None:
                return int(count)
            window_ends_at = await session.scalar(select(table.window_ends_at).where(table.subject == subject))
        if window_ends_at is not None:
            if window_ends_at > now:
                raise OverBudget(subject, window_ends_at - now)
            continue  # the window ended between the UPDATE and the read: go round
        try:
            async with sessions.begin() as session:
                session.add(RequestCount(subject=subject, count=1, window_ends_at=now + budget.window))
            return 1
        except IntegrityError:
            continue  # another request opened the window first
    raise OverBudget(subject, budget.window)


async def give_back(sessions: SessionFactory, subject: str) -> None:
    """Undo one count of `subject`'s window: the request it admitted could not go on (Temporal was away)."""
    async with sessions.begin() as session:
        await session.execute(
            update(RequestCount)
            .where(RequestCount.subject == subject, RequestCount.count > 0)
            .values(count=RequestCount.count - 1)
        )


async def delete_expired_batch(sessions: SessionFactory, *, retention: timedelta, batch: int) -> int:
    """Delete up to `batch` rows of each throttle table that nothing reads any more; returns how many.

    A request count is dead once its window ended. A login throttle is kept for `retention` after its
    window ended and its lock lifted, so no lockout workflow (which owns windows and locks) still
    writes to it; a row deleted early would only let a subject start a fresh window."""
    now = utcnow()
    deleted = 0
    cutoff = now - retention
    async with sessions.begin() as session:
        counts = select(RequestCount.subject).where(RequestCount.window_ends_at <= now).limit(batch)
        result = await session.execute(delete(RequestCount).where(RequestCount.subject.in_(counts.scalar_subquery())))
        deleted += int(result.rowcount or 0)  # type: ignore[attr-defined]
    async with sessions.begin() as session:
        throttles = (
            select(LoginThrottle.subject)
            .where(
                LoginThrottle.window_ends_at <= cutoff,
                or_(LoginThrottle.locked_until.is_(None), LoginThrottle.locked_until <= cutoff),
            )
            .limit(batch)
        )
        result = await session.execute(
            delete(LoginThrottle).where(LoginThrottle.subject.in_(throttles.scalar_subquery()))
        )
        deleted += int(result.rowcount or 0)  # type: ignore[attr-defined]
    return deleted
