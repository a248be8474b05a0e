"""The parts a fault test breaks: a Temporal dev server, a worker process, a TCP proxy.

Each can be stopped and started again on the same port, which is what the fault tests need and what
the session-wide fixtures of tests/conftest.py (WorkflowEnvironment, in-process workers) cannot do.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from conftest import _binary, free_port
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from accounts.temporal import SEARCH_ATTRIBUTES, dev_server_arguments

ROOT = Path(__file__).resolve().parents[2]


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


class TemporalServer:
    """`temporal server start-dev` with file persistence, restartable on the same port (as `accounts dev` runs it)."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._db = directory / "temporal.db"
        self._log = directory / "temporal.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        arguments = [
            _binary("temporal"), "server", "start-dev", "--headless",
            "--ip", "127.0.0.1", "--port", str(self.port),
            "--db-filename", str(self._db), "--log-level", "error",
            *dev_server_arguments(),
        ]  # fmt: skip
        for key in SEARCH_ATTRIBUTES:
            arguments += ["--search-attribute", f"{key.name}=Keyword"]
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(arguments, stdout=log, stderr=subprocess.STDOUT)

    async def ready(self, client: Client, timeout: float = 60) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"the Temporal dev server exited:\n{_tail(self._log)}")
            try:
                await client.count_workflows()  # visibility and search attributes ready, not just the port
                return
            except Exception:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.3)

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            await asyncio.to_thread(process.wait, 20)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait)


class TcpProxy:
    """A TCP forwarder in front of PostgreSQL that a test can cut and restore.

    `cut()`: every connection is dropped and new ones are closed at once, as a stopped server or a
    refused connection looks to a client. `cut(silently=True)`: nothing answers any more, connections
    stay open and new ones are accepted, as a network partition looks; clients wait on their timeouts.
    `restore()` lets connections through again (connections that went silent are reset then)."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._silent: asyncio.Event | None = None  # set when the silent cut ends

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def is_cut(self) -> bool:
        return self._cut

    async def start(self) -> None:
        self._cut = False
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def stop(self) -> None:
        self.restore()
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self, *, silently: bool = False) -> None:
        self._cut = True
        if silently:
            self._silent = asyncio.Event()
            return
        self._drop_all()

    def restore(self) -> None:
        if self._silent is not None:
            self._silent.set()
            self._silent = None
            self._drop_all()
        self._cut = False

    def _drop_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self._cut:
            if self._silent is not None:  # accepted, never answered, reset when the cut ends
                self._writers.add(client_writer)
                await self._silent.wait()
            client_writer.transport.abort()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            client_writer.transport.abort()
            return
        self._writers.update((client_writer, upstream_writer))
        try:
            await asyncio.gather(self._pipe(client_reader, upstream_writer), self._pipe(upstream_reader, client_writer))
        finally:
            for writer in (client_writer, upstream_writer):
                self._writers.discard(writer)
                writer.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                if self._cut:
                    if self._silent is None:
                        break
                    continue  # silently lost
                writer.write(data)
                await writer.drain()
        writer.transport.abort()


class SmtpGate:
    """A TCP forwarder in front of the SMTP sink that can hold the server's answer to a message: armed,
    it lets a message through (the sink stores it) and keeps back the reply, so the sender stands right
    after the handover and before it learns of it, until `release()`. Connections fail while the sink
    is stopped, as they would without the gate."""

    _END_OF_DATA = b"\r\n.\r\n"

    def __init__(self, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        self._server: asyncio.Server | None = None
        self._armed = False
        self._released = asyncio.Event()
        self.held = 0  # messages whose reply is held back right now

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def stop(self) -> None:
        self.release()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def arm(self) -> None:
        self._armed = True
        self._released = asyncio.Event()

    def release(self) -> None:
        self._armed = False
        self._released.set()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self._upstream_port)
        except OSError:
            client_writer.transport.abort()
            return
        holding = asyncio.Event()  # set once this connection's message went through while armed

        async def to_server() -> None:
            tail = b""
            with contextlib.suppress(ConnectionError, OSError):
                while data := await client_reader.read(65536):
                    seen, tail = tail + data, (tail + data)[-4:]
                    if self._armed and not holding.is_set() and self._END_OF_DATA in seen:
                        holding.set()  # before the message goes on: its reply must find it set
                    upstream_writer.write(data)
                    await upstream_writer.drain()
            upstream_writer.transport.abort()

        async def to_client() -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await upstream_reader.read(65536):
                    if holding.is_set() and not self._released.is_set():
                        self.held += 1
                        try:
                            await self._released.wait()
                        finally:
                            self.held -= 1
                    client_writer.write(data)
                    await client_writer.drain()
            client_writer.transport.abort()

        await asyncio.gather(to_server(), to_client())


class ServiceProcess:
    """A service command as production runs it (`accounts api`, `accounts worker`, a one-shot job): its
    own argument list, working directory and environment (no ACCOUNTS_* but those given), its output
    in a log. `accounts` runs as this checkout's `python -m cli`."""

    def __init__(self, name: str, argv: list[str], environment: dict[str, str], cwd: Path, log: Path) -> None:
        self.name = name
        self._argv = [sys.executable, "-m", "cli", *argv[1:]] if argv[:1] == ["accounts"] else argv
        base = {k: v for k, v in os.environ.items() if not k.startswith("ACCOUNTS_")}
        self._environment = {**base, **environment, "PYTHONPATH": str(ROOT)}
        self._cwd = cwd
        self._log = log
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def returncode(self) -> int | None:
        return self._process.poll() if self._process is not None else None

    def start(self) -> None:
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(
                self._argv, cwd=self._cwd, env=self._environment, stdout=log, stderr=subprocess.STDOUT
            )

    async def finished(self, timeout: float = 60) -> int:
        """Wait for a one-shot job to end; its exit code."""
        assert self._process is not None
        try:
            return await asyncio.to_thread(self._process.wait, timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise TimeoutError(f"{self.name} did not finish within {timeout} s:\n{self.log_tail()}") from None

    async def listening(self, port: int, timeout: float = 60) -> None:
        """Wait until the port accepts connections (uvicorn binds it once the app's startup is done)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            if self.returncode is not None:
                raise RuntimeError(f"{self.name} exited ({self.returncode}):\n{self.log_tail()}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(f"{self.name} never listened on {port}:\n{self.log_tail()}") from None
                await asyncio.sleep(0.1)
                continue
            writer.close()
            return

    async def polling(self, client: Client, task_queue: str, timeout: float = 60) -> None:
        """Wait until this process polls the activity task queue (a worker's identity is `pid@host`)."""
        assert self._process is not None
        identity = f"{self._process.pid}@"
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            if self.returncode is not None:
                raise RuntimeError(f"{self.name} exited ({self.returncode}):\n{self.log_tail()}")
            described = await client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=client.namespace,
                    task_queue=TaskQueue(name=task_queue),
                    task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
                )
            )
            if any(poller.identity.startswith(identity) for poller in described.pollers):
                return
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{self.name} never polled {task_queue}:\n{self.log_tail()}")
            await asyncio.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, whatever was in flight is lost."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    async def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM (what `docker compose stop` sends), then its exit code; SIGKILL after `timeout`."""
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(process.wait, timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait)
        return process.returncode

    def log_tail(self) -> str:
        return _tail(self._log)


class WorkerProcess(ServiceProcess):
    """`python worker.py` in the worktree, configured only through ACCOUNTS_* variables, as in production,
    and started again after a kill (each start a new generation, marked in the shared log)."""

    def __init__(self, environment: dict[str, str], log: Path) -> None:
        super().__init__("the worker", [sys.executable, "worker.py"], environment, ROOT, log)
        self.generation = 0

    def start(self) -> None:
        assert self.returncode is not None or self.pid is None, "a worker is already running"
        self.generation += 1
        with self._log.open("ab") as log:
            log.write(f"--- worker {self.generation} ---\n".encode())
        super().start()
