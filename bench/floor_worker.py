"""The engine floor's worker as a process of its own, as `accounts worker` runs registrations:

    python bench/floor_worker.py   (ACCOUNTS_TEMPORAL_ADDRESS, BENCH_FLOOR_TASK_QUEUE from the environment)

bench/registration.py starts it beside the real worker; it polls until terminated. (A separate script
because the workflow sandbox re-imports a workflow's module, which must not be the script being run.)
"""

from __future__ import annotations

import asyncio
import os
import signal

from floor import FloorWorkflow, floor_step  # bench/floor.py, beside this script
from temporalio.client import Client
from temporalio.worker import Worker


async def main() -> None:
    client = await Client.connect(os.environ["ACCOUNTS_TEMPORAL_ADDRESS"])
    worker = Worker(
        client, task_queue=os.environ["BENCH_FLOOR_TASK_QUEUE"], workflows=[FloorWorkflow], activities=[floor_step]
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with worker:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
