"""Which staff locks start a lock notice (api/web/sign_in.py), and that a sign-in answers as before when
Temporal cannot be reached. The notice itself, over HTTP: tests/e2e/test_staff_unlock_http.py."""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import datetime
from typing import Any

import pytest
from conftest import TEST_DEFAULTS, Database

from accounts.models import utcnow
from accounts.settings import Settings
from accounts.staff import StaffDirectory
from api.web.sign_in import SignInBlocked, StaffSignIn
from starter.staff_locks import StaffLockNotices

PASSWORD = "Orchard-lamp-51#drift"


class Recorded(StaffLockNotices):
    def __init__(self) -> None:
        self.started: list[dict[str, Any]] = []

    async def start(self, *, staff_id: int, window_ends_at: datetime, locked_until: datetime, failures: int) -> bool:
        self.started.append({"staff_id": staff_id, "locked_until": locked_until, "failures": failures})
        return True


class Unreachable(StaffLockNotices):
    def __init__(self) -> None:
        pass

    async def start(self, **_: Any) -> bool:
        raise RuntimeError("Failed client connect")  # what the SDK raises without a connection


def settings_of(database: Database) -> Settings:
    overrides: dict[str, Any] = {**TEST_DEFAULTS, "lockout_max_failures": 3}
    return Settings(_env_file=None, database_url=database.url, **overrides)  # type: ignore[call-arg]


async def answers(sign_in: StaffSignIn, name: str) -> list[str]:
    seen = []
    for _ in range(5):
        try:
            seen.append(
                "signed in"
                if await sign_in.authenticate(name, "wrong-Guess-42!", client_ip="198.51.100.9")
                else "failed"
            )
        except SignInBlocked:
            seen.append("blocked")
    while sign_in._notifying:  # the notice starts on a task of its own, after the answer
        await asyncio.sleep(0.01)
    return seen


SEEN = ["failed", "failed", "failed", "blocked", "blocked"]


async def test_only_an_enabled_member_with_an_email_is_noticed_once_per_lock(database: Database) -> None:
    settings = settings_of(database)
    directory = StaffDirectory.from_settings(database.sessions, settings)
    suffix = os.urandom(4).hex()
    mailed, _ = await directory.create(f"m-{suffix}", "support", password=PASSWORD, email="m@example.com")
    silent, _ = await directory.create(f"s-{suffix}", "support", password=PASSWORD)
    disabled, _ = await directory.create(f"d-{suffix}", "support", password=PASSWORD, email="d@example.com")
    await directory.set_disabled(disabled.name, True)
    notices = Recorded()
    sign_in = StaffSignIn(settings, database.sessions, directory, notices)
    before = utcnow()

    for name in (mailed.name, silent.name, disabled.name, f"nobody-{suffix}"):
        assert await answers(sign_in, name) == SEEN  # one answer for all four
    assert [(n["staff_id"], n["failures"]) for n in notices.started] == [(mailed.id, 3)]
    locked_until = notices.started[0]["locked_until"]
    assert before + settings.lockout_duration <= locked_until <= utcnow() + settings.lockout_duration

    cased, _ = await directory.create(f"Cased-{suffix}", "support", password=PASSWORD, email="c@example.com")
    assert await answers(sign_in, cased.name.upper()) == SEEN  # the name's lock, typed in another case
    assert [n["staff_id"] for n in notices.started] == [mailed.id, cased.id]


async def test_with_temporal_unreachable_the_lock_holds_and_the_sign_in_answers_as_before(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_of(database)
    directory = StaffDirectory.from_settings(database.sessions, settings)
    member, _ = await directory.create(f"u-{os.urandom(4).hex()}", "support", password=PASSWORD, email="u@example.com")
    sign_in = StaffSignIn(settings, database.sessions, directory, Unreachable())
    with caplog.at_level(logging.WARNING, logger="accounts.backoffice.sign_in"):
        assert await answers(sign_in, member.name) == SEEN
    assert "staff lock notice not started: RuntimeError" in caplog.text
    with pytest.raises(SignInBlocked):  # the right password too: the name stays locked by the database
        await sign_in.authenticate(member.name, PASSWORD, client_ip="198.51.100.9")
