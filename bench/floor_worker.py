"""The engine floor's worker as a process of its own, as `accounts worker` runs registrations:

    python bench/floor_worker.py   (ACCOUNTS_TEMPORAL_ADDRESS, BENCH_FLOOR_TASK_QUEUE from the environment)

bench/registration.py starts it beside the real worker; it polls until terminated. (A separate script
because the workflow sandbox re-imports a workflow's module, which must not be the script being run.)
"""

from __future__ import annotations

import asyncio
import os
import signal

from floor import FloorWorkflow, email_queue, floor_step  # bench/floor.py, beside this script
from temporalio.client import Client
from temporalio.worker import Worker


async def main() -> None:
    client = await Client.connect(os.environ["ACCOUNTS_TEMPORAL_ADDRESS"])
    queue = os.environ["BENCH_FLOOR_TASK_QUEUE"]
    lifecycles = Worker(client, task_queue=queue, workflows=[FloorWorkflow], activities=[floor_step])
    # the emails' queue, rate-bounded by the server as the real worker's is (worker.py)
    rate = float(os.environ.get("ACCOUNTS_EMAIL_SENDS_PER_SECOND", "10"))
    emails = Worker(
        client, task_queue=email_queue(queue), activities=[floor_step], max_task_queue_activities_per_second=rate
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with lifecycles, emails:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
