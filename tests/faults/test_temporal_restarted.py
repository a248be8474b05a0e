"""Fault 4: the Temporal dev server restarts (file persistence) while registrations wait for confirmation.

The server is stopped and started again on the same port with the same database file; the worker process,
the API and their clients stay up and reconnect on their own. Links emailed before the restart still
work, and the reminder and expiry timers (15 s and 30 s here) still fire. While the server is down, a
request that needs it answers `503` with `Retry-After`.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from starter.client import registration_id

from . import flows
from .conftest import HarnessFactory

pytestmark = pytest.mark.faults
REMINDER_AFTER = timedelta(seconds=15)
EXPIRES_AFTER = timedelta(seconds=30)


async def test_registrations_waiting_across_a_temporal_restart_confirm_remind_and_expire(
    harness: HarnessFactory,
) -> None:
    timings = {"verification_reminder_after": REMINDER_AFTER, "verification_expires_after": EXPIRES_AFTER}
    async with harness(database="sqlite", **timings) as h, h.http(timeout=60) as http:
        (a_email, a_ref, a_token), (b_email, b_ref, _), (c_email, c_ref, _) = await asyncio.gather(
            *(flows.registered(h, http) for _ in range(3))
        )
        for reference in (a_ref, b_ref, c_ref):
            await h.quiescent(reference)

        h.log("Temporal dev server stopping")
        await h.temporal.stop()
        try:
            during = await flows.timed(flows.response_of(flows.sign_up(http)))
            h.log(f"while Temporal is down POST /customers answered {during[0]} after {during[2]:.1f} s")
        finally:  # the server serves the package's other tests too
            h.temporal.start()
            await h.temporal.ready(h.client)
            h.log("Temporal dev server ready again")

        assert (await flows.confirm(http, a_token)).status_code == 204  # a link from before the restart
        await h.mail_to(a_email, "active")
        reminder = await h.mail_to(b_email, "reminder", timeout=40)
        assert (await flows.confirm(http, flows.token_from(reminder))).status_code == 204
        await h.mail_to(b_email, "active")
        await h.mail_to(c_email, "reminder", timeout=40)

        outcomes = {ref: (await h.result(registration_id(ref), timeout=60))["outcome"] for ref in (a_ref, b_ref, c_ref)}
        assert outcomes == {a_ref: "verified", b_ref: "verified", c_ref: "expired"}
        references = [a_ref, b_ref, c_ref]
        assert await h.delivery_problems(references) == []
        counts = await h.audit_counts(references)
        assert dict(counts) == {
            (a_ref, "registration_started"): 1,
            (a_ref, "email_verified"): 1,
            (b_ref, "registration_started"): 1,
            (b_ref, "email_verified"): 1,
            (c_ref, "registration_started"): 1,
            (c_ref, "registration_expired"): 1,
        }
        status, retry_after, seconds, body = during
        assert (status, retry_after is not None) == (503, True), f"{status} after {seconds:.1f} s: {body[:300]}"
        assert seconds <= flows.ANSWER_WITHIN
