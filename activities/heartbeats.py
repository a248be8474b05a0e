"""Heartbeats for activities that have no progress to report: they only say "this worker still runs me".

An activity scheduled with a heartbeat timeout is retried by the server once no heartbeat arrived for
that long. Without one, a task lost with its worker waits out its start-to-close timeout: a worker that
was SIGKILLed mid-attempt, or one that stopped just as the server handed it a task on a poll it then cut
(Temporal servers without `frontend.enableCancelWorkerPollsOnShutdown` can lose a task that way). The
email sends' start-to-close is 90 s, as an SMTP handover may take ACCOUNTS_SMTP_TIMEOUT, so a lost email
waited 90 s; kept alive, it waits the heartbeat timeout (workflows/queues.py: 10 s).

`heartbeating` beats only once the work has run `every` seconds: a send that takes milliseconds sends
no heartbeat at all, so the common case costs nothing.

A heartbeat's reply is also how an activity learns it was cancelled (its workflow was, by a deletion
say). Without heartbeats that never reached a send, and `kept_alive` keeps it so: a handover under way
runs to its end and is marked, and a deletion that waits for the sends under way sees it finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from temporalio import activity

T = TypeVar("T")
P = ParamSpec("P")

KEEP_ALIVE_SECONDS = 3.0  # well inside the email sends' 10 s heartbeat timeout (the SDK throttles to 8 s)


async def heartbeating(work: Awaitable[T], every: float = KEEP_ALIVE_SECONDS) -> T:
    """Await `work`, heartbeating each `every` seconds while it runs; the activity's cancellation (which
    the heartbeats' replies bring) reaches `work`."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(every)
            try:
                activity.heartbeat()
            except Exception:  # never seen; the work goes on, and its heartbeat timeout may then retry it
                activity.logger.warning("heartbeats stopped", exc_info=True)
                return

    beating = asyncio.create_task(beat())
    try:
        return await work
    finally:
        beating.cancel()


def kept_alive(method: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """An activity (below `@activity.defn`) that heartbeats while it runs and runs to its end, whatever
    cancellation its heartbeats bring back: see the module's docstring. (Its work is bounded: a send by
    ACCOUNTS_SMTP_TIMEOUT and the database's, which the worker's graceful shutdown outlasts.)"""

    @functools.wraps(method)
    async def run(*args: P.args, **kwargs: P.kwargs) -> T:
        work = asyncio.ensure_future(heartbeating(method(*args, **kwargs)))
        while not work.done():
            with contextlib.suppress(asyncio.CancelledError):  # the activity's: the work goes on
                await asyncio.shield(work)
        return work.result()  # its result, or its own error (or its own cancellation)

    return run
