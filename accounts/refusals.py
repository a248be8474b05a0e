"""Sign-in refusals from memory: the subjects this API process saw the database refuse, for a few seconds.

The database (accounts/throttle.py) is the authority on what is blocked. A flood of attempts on one
locked account, though, would cost each refusal the framework, the request budget and the throttle
reads; so when `throttle.reserve` refuses a subject, the process remembers it (keyed as the request
names it: the typed address's keyed hash, the client network's) until the end the database gave, but
for at most `hold` (ACCOUNTS_LOCKOUT_REFUSAL_MEMORY). Within it, attempts on that subject are refused
from here, before any database read. A lock lifted elsewhere (support, a reset, another process) is
honoured once the memory lets go, at most `hold` later.

The first burst: until the database has refused once, nothing is remembered. So at most `places`
untrusted attempts per account (the threshold) may be between their arrival and their reservation at
once, and an attempt that finds them all taken is refused at once, like a remembered refusal: those on
their way hold every attempt the window can still admit (at most the threshold), so the database would
refuse it too, unless one of them is the right password. Nothing waits here: a burst of 200 is answered
in the time its 191 refusals take to write, not after the nine admitted have reached the database.
"""

from __future__ import annotations

import time
from contextvars import ContextVar, Token
from datetime import timedelta

from accounts.throttle import Blocked


class Place:
    """One untrusted attempt's place among those of its account on their way to the database."""

    def __init__(self, subjects: tuple[str, ...], memory: RefusalMemory) -> None:
        self.subjects = subjects
        self._memory = memory
        self._released = False
        self._entries = 1  # the HTTP edge, then the sign-in: the first to enter closes it
        self._token: Token[Place | None] | None = _held.set(self)

    def release(self) -> None:
        """The attempt has its reservations (or its refusal): the next one may go on. Idempotent."""
        if not self._released:
            self._released = True
            self._memory._leave(self.subjects[0])

    def close(self) -> None:
        self._entries -= 1
        if self._entries > 0:
            return
        self.release()
        if self._token is not None:
            _held.reset(self._token)
            self._token = None


_held: ContextVar[Place | None] = ContextVar("sign_in_place", default=None)


class RefusalMemory:
    def __init__(self, hold: timedelta, places: int, full: timedelta, max_entries: int = 100_000) -> None:
        self._hold = hold.total_seconds()
        self._places = max(1, places)
        self._full = full  # the wait an attempt refused for want of a place hears: the lock those ahead bring
        self._max_entries = max_entries
        self._until: dict[str, tuple[float, float]] = {}  # subject -> (blocked until, remembered until)
        self._owners: dict[str, int | None] = {}  # an account subject -> its customer's id (None: no account)
        self._inside: dict[str, int] = {}

    def refused(self, *subjects: str) -> Blocked | None:
        """The remembered refusal of the first of `subjects` that has one, or None."""
        now = time.monotonic()
        for subject in subjects:
            entry = self._until.get(subject)
            if entry is None:
                continue
            blocked_until, remembered_until = entry
            if remembered_until <= now:
                self.forget(subject)
                continue
            return Blocked(subject, timedelta(seconds=blocked_until - now))
        return None

    def owner(self, subject: str) -> int | None:
        """The id of the customer a remembered account subject belongs to; None for an unknown address."""
        return self._owners.get(subject)

    def remember(self, subject: str, blocked: Blocked, *, owner: int | None = None) -> None:
        if self._hold <= 0:
            return
        now = time.monotonic()
        if len(self._until) >= self._max_entries:  # a flood of distinct subjects: keep only the live ones
            self._until = {s: e for s, e in self._until.items() if e[1] > now}
            self._owners = {s: o for s, o in self._owners.items() if s in self._until}
            if len(self._until) >= self._max_entries:
                self._until.clear()
                self._owners.clear()
        blocked_until = now + blocked.retry_after.total_seconds()
        self._until[subject] = (blocked_until, min(blocked_until, now + self._hold))
        self._owners[subject] = owner

    def forget(self, subject: str) -> None:
        self._until.pop(subject, None)
        self._owners.pop(subject, None)

    async def enter(self, *subjects: str) -> Place:
        """Take a place among the attempts of `subjects[0]` (the account) on their way to the database, or
        raise Blocked: the remembered refusal of any of `subjects`, or, when every place is taken, the
        lock those ahead of it bring (ACCOUNTS_LOCKOUT_DURATION, as the database would answer next).
        Entered again by the same attempt (the HTTP edge first, then the sign-in itself), it hands back the
        place already held: one attempt never takes a second place while holding one."""
        held = _held.get()
        if held is not None and not held._released:
            held._entries += 1
            return held
        key = subjects[0]
        if (refusal := self.refused(*subjects)) is not None:
            raise refusal
        if self._inside.get(key, 0) >= self._places:  # those on their way hold all the window can admit
            raise Blocked(key, self._full)
        self._inside[key] = self._inside.get(key, 0) + 1
        return Place(subjects, self)

    def _leave(self, key: str) -> None:
        inside = self._inside.get(key, 1) - 1
        if inside > 0:
            self._inside[key] = inside
        else:
            self._inside.pop(key, None)
