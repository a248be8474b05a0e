"""Seeing inside, as ops would: `/metrics` scraped over HTTP, health endpoints, JSON log lines, traces.

The main test runs `accounts worker` and `accounts api` as processes configured by ACCOUNTS_* alone (JSON
logs, metrics listeners on port 0, found in their log lines), registers and verifies a customer, lets a
second one's verification email bounce, signs in right and wrong, and then reads what a Prometheus server
and a log shipper would read. Real parts throughout: dev server, SMTP sink, SQLite, HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from conftest import (
    ACCOUNTS,
    TEST_DEFAULTS,
    Database,
    checkout_env,
    client_with_converter,
    follow_link,
    free_port,
    registration_body,
    unique_email,
)
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from accounts.db import create_engine, session_factory
from accounts.settings import Settings
from accounts.temporal import data_converter
from accounts.tracing import Tracing
from accounts.worker_ops import WorkerOps
from api.app import create_app
from api.serving import uvicorn_config
from devstack.mailsink import MailSink
from starter import AccountsClient, Registration
from worker import build_worker

pytestmark = pytest.mark.e2e
PASSWORD = "Vq8#nT2!pLm4-kettle"
JSONAPI = "application/vnd.api+json"
CLIENT_IP = "203.0.113.7"  # a documentation address, named by the trusted proxy (127.0.0.1) in X-Forwarded-For
LISTENING = re.compile(r"(api|worker) metrics and health on http://127\.0\.0\.1:(\d+)")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """A scrape as Prometheus reads it (prometheus_client's parser)."""
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in found.items() if n == name and wanted <= have)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 15) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.1)


def log_lines(path: Path) -> list[dict[str, Any]]:
    """Every line a process wrote, each of which must be one JSON object."""
    lines = path.read_text(encoding="utf-8").splitlines()
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"{path.name}: not a JSON line: {line!r}") from None
    return parsed


class Service:
    """`accounts worker` or `accounts api` as a process, its output in a file."""

    def __init__(self, command: str, environment: dict[str, str], directory: Path) -> None:
        self.log = directory / f"{command}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [*ACCOUNTS, command], cwd=directory, env=environment, stdout=out, stderr=subprocess.STDOUT
            )

    async def metrics_port(self, timeout: float = 60) -> int:
        async with asyncio.timeout(timeout):
            while True:
                if self.process.poll() is not None:
                    raise AssertionError(f"exited {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
                written = self.log.read_text(encoding="utf-8")
                for line in written[: written.rfind("\n") + 1].splitlines():  # whole lines only
                    found = LISTENING.search(line)
                    if found:
                        return int(found[2])
                await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                await asyncio.to_thread(self.process.wait, 30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def service_environment(database: Database, sink: MailSink, temporal: str, api_port: int, var: Path) -> dict[str, str]:
    values = {
        "database_url": database.url,
        "temporal_address": temporal,
        "task_queue": f"accounts-test-{uuid.uuid4()}",
        "smtp_host": "127.0.0.1",
        "smtp_port": sink.port,
        "public_url": f"http://127.0.0.1:{api_port}",
        "customer_reference_prefix": database.reference_prefix,
        "var_dir": var,
        "api_host": "127.0.0.1",
        "api_port": api_port,
        "metrics_host": "127.0.0.1",
        "api_metrics_port": 0,
        "worker_metrics_port": 0,
        "log_format": "json",
        **TEST_DEFAULTS,
    }
    base = {k: v for k, v in os.environ.items() if not k.startswith("ACCOUNTS_")}
    return checkout_env({**base, **{f"ACCOUNTS_{k.upper()}": str(v) for k, v in values.items()}})


@contextlib.asynccontextmanager
async def services(environment: dict[str, str], directory: Path) -> AsyncIterator[tuple[Service, Service]]:
    worker = Service("worker", environment, directory)
    api = Service("api", environment, directory)
    try:
        yield worker, api
    finally:
        await asyncio.gather(api.stop(), worker.stop())


async def test_a_scrape_after_real_lifecycles_shows_them_and_the_logs_name_no_one(
    dev_server: WorkflowEnvironment, sqlite_database: Database, tmp_path: Path
) -> None:
    bounces: set[str] = set()
    refuse = lambda address: "550 5.1.1 no such user" if address.lower() in bounces else None  # noqa: E731
    api_port = free_port()
    async with MailSink(refuse_recipient=refuse) as sink:
        target = dev_server.client.service_client.config.target_host
        environment = service_environment(sqlite_database, sink, target, api_port, tmp_path / "var")
        async with services(environment, tmp_path) as (worker, api), httpx.AsyncClient(timeout=30) as http:
            worker_metrics = f"http://127.0.0.1:{await worker.metrics_port()}"
            api_metrics = f"http://127.0.0.1:{await api.metrics_port()}"
            base = f"http://127.0.0.1:{api_port}"

            async def ready(url: str) -> bool:
                with contextlib.suppress(httpx.TransportError):
                    return (await http.get(f"{url}/health/ready")).status_code == 200
                return False

            await eventually(lambda: ready(worker_metrics), timeout=60)
            await eventually(lambda: ready(base), timeout=60)

            # one customer registers from a public address (through the trusted proxy) and verifies
            email = unique_email("observed")
            headers = {"Content-Type": JSONAPI, "X-Forwarded-For": CLIENT_IP, "X-Request-Id": "obs-registration-1"}
            created = await http.post(f"{base}/customers", json=registration_body(email, PASSWORD), headers=headers)
            assert created.status_code == 201, created.text
            reference = created.json()["data"]["id"]
            verification = await sink.wait_for(lambda m: email in m.to and "confirm" in m.subject.lower(), timeout=20)
            link = next(link for link in verification.links if "token=" in link)
            assert (await follow_link(http, link)).status_code == 200
            await sink.wait_for(lambda m: email in m.to and "welcome" in m.subject.lower(), timeout=20)

            # a second one's verification email bounces
            bounced = unique_email("bounced")
            bounces.add(bounced)
            taken = await http.post(f"{base}/customers", json=registration_body(bounced, PASSWORD), headers=headers)
            assert taken.status_code == 201, taken.text
            bounced_reference = taken.json()["data"]["id"]

            # sign-ins: one wrong password, one right, then a request as that customer
            def sign_in(password: str) -> dict[str, Any]:
                attributes = {"username": email, "password": password}
                return {"data": {"type": "access-tokens", "attributes": attributes}}

            wrong = await http.post(f"{base}/access-tokens", json=sign_in("not-the-password-1"), headers=headers)
            assert wrong.status_code == 401
            right = await http.post(f"{base}/access-tokens", json=sign_in(PASSWORD), headers=headers)
            assert right.status_code == 201, right.text
            token = right.json()["data"]["attributes"]["accessToken"]
            me = await http.get(
                f"{base}/customers/{reference}",
                headers={"Authorization": f"Bearer {token}", "X-Request-Id": "obs-me-1", "X-Forwarded-For": CLIENT_IP},
            )
            assert me.status_code == 200, me.text

            # the API's scrape: its own counters, by route template
            scrape = await http.get(f"{api_metrics}/metrics")
            assert scrape.status_code == 200
            assert scrape.headers["content-type"].startswith("text/plain")
            api_samples = samples(scrape.text)
            assert value(api_samples, "accounts_registrations_total", event="started") == 2
            assert value(api_samples, "accounts_sign_ins_total", outcome="failed") == 1
            assert value(api_samples, "accounts_sign_ins_total", outcome="succeeded") == 1
            assert value(api_samples, "accounts_sign_ins_total", outcome="blocked") == 0
            posted = {"method": "POST", "route": "/customers", "status": "201"}
            assert value(api_samples, "accounts_http_requests_total", **posted) == 2
            assert value(api_samples, "accounts_http_request_duration_seconds_count", **posted) == 2
            assert value(api_samples, "accounts_http_request_duration_seconds_bucket", **posted, le="+Inf") == 2
            assert value(api_samples, "accounts_http_requests_total", route="/access-tokens", status="401") == 1
            mine = {"method": "GET", "route": "/customers/{customer_reference}", "status": "200"}
            assert value(api_samples, "accounts_http_requests_total", **mine) == 1
            for private in (reference, email, token, CLIENT_IP):
                assert private not in scrape.text  # no label names a customer, a token or an address

            # the worker's scrape: what its activities counted, and Temporal's own metrics
            async def worker_counted() -> bool:
                found = samples((await http.get(f"{worker_metrics}/metrics")).text)
                return (
                    value(found, "accounts_registrations_total", event="verified") == 1
                    and value(found, "accounts_emails_total", template="verify", outcome="sent") == 1
                    and value(found, "accounts_emails_total", template="welcome", outcome="sent") == 1
                    and value(found, "accounts_emails_total", template="verify", outcome="bounced") == 1
                )

            await eventually(worker_counted)
            worker_scrape = (await http.get(f"{worker_metrics}/metrics")).text
            worker_samples = samples(worker_scrape)
            queue = environment["ACCOUNTS_TASK_QUEUE"]
            sdk = {name for (name, labels), _ in worker_samples.items() if name.startswith("temporal_")}
            assert any(n.endswith("_total") for n in sdk), sorted(sdk)  # counters (requests, polls, completions)
            assert any(n.endswith("_bucket") for n in sdk), sorted(sdk)  # latency histograms
            assert value(worker_samples, "temporal_activity_execution_latency_count", task_queue=queue) >= 3
            assert value(worker_samples, "accounts_registrations_total", event="started") == 0  # the API's, not here
            assert reference not in worker_scrape and bounced not in worker_scrape

            assert (await http.get(f"{worker_metrics}/health/live")).json() == {"status": "ok"}
            worker_ready = await http.get(f"{worker_metrics}/health/ready")
            assert worker_ready.json() == {
                "status": "ok",
                "checks": {"database": "ok", "temporal": "ok", "worker": "ok"},
            }

    # what a log shipper reads: one JSON object a line, about requests and runs, naming no one
    api_lines, worker_lines = log_lines(api.log), log_lines(worker.log)
    registration = [line for line in api_lines if line.get("request_id") == "obs-registration-1"]
    assert any(line.get("path") == "/customers" and line.get("status") == 201 for line in registration), api_lines
    answered = {
        (line.get("path"), line.get("status"), line.get("customer_reference"))
        for line in registration
        if line.get("status") is not None
    }
    assert {
        ("/customers", 201, reference),  # a sign-up's line names the reference it was given
        ("/customers", 201, bounced_reference),
        ("/access-tokens", 401, None),  # a refused sign-in names no one
        ("/access-tokens", 201, reference),
    } <= answered, answered
    assert any(
        line.get("request_id") == "obs-me-1" and line.get("customer_reference") == reference for line in api_lines
    )
    bounce = [line for line in worker_lines if "bounced" in line["message"]]
    assert bounce, worker_lines
    assert bounce[0]["workflow_id"] == f"registration:{bounced_reference}"
    assert bounce[0]["customer_reference"] == bounced_reference
    assert bounce[0]["level"] == "WARNING"
    everything = api.log.read_text(encoding="utf-8") + worker.log.read_text(encoding="utf-8")
    for private in (email, bounced, CLIENT_IP, token, PASSWORD):
        assert private not in everything
    verification_token = link.split("token=", 1)[1].split("&", 1)[0]
    assert verification_token not in everything


# --- health -----------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def serving(settings: Settings, client: Client) -> AsyncIterator[str]:
    port = free_port()
    config = uvicorn_config(create_app(settings, temporal_client=client), settings, port=port, log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def settings_of(**values: Any) -> Settings:
    return Settings(_env_file=None, **{**TEST_DEFAULTS, **values})  # type: ignore[call-arg]


def unreachable_databases(tmp_path: Path) -> dict[str, str]:
    return {
        # a directory where the file should be: SQLite cannot open it
        "sqlite": f"sqlite+aiosqlite:///{tmp_path}",
        # nothing listens on port 1: refused at once
        "postgres": "postgresql+asyncpg://postgres@127.0.0.1:1/accounts",
    }


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_ready_answers_503_with_retry_after_while_the_database_cannot_be_reached(
    dev_server: WorkflowEnvironment, tmp_path: Path, kind: str
) -> None:
    settings = settings_of(
        database_url=unreachable_databases(tmp_path)[kind],
        var_dir=tmp_path / "var",
    )
    async with serving(settings, client_with_converter(dev_server, settings)) as base, httpx.AsyncClient() as http:
        ready = await http.get(f"{base}/health/ready")
        assert ready.status_code == 503
        assert ready.headers["retry-after"] == "5"
        assert ready.headers["content-type"].startswith(JSONAPI)
        assert ready.json() == {
            "errors": [{"status": 503, "code": "503", "detail": ready.json()["errors"][0]["detail"]}]
        }
        assert ready.json()["errors"][0]["detail"].startswith("database is unavailable")
        assert (await http.get(f"{base}/health/live")).json() == {"status": "ok"}
        health = await http.get(f"{base}/health")  # as documented before: the process answers
        assert (health.status_code, health.json()) == (200, {"status": "ok"})


async def test_ready_answers_503_while_temporal_cannot_be_reached(sqlite_database: Database, tmp_path: Path) -> None:
    settings = settings_of(
        database_url=sqlite_database.url,
        var_dir=tmp_path / "var",
    )
    away = await Client.connect(f"127.0.0.1:{free_port()}", lazy=True, data_converter=data_converter(settings))
    async with serving(settings, away) as base, httpx.AsyncClient() as http:
        ready = await http.get(f"{base}/health/ready")
        assert ready.status_code == 503
        assert [e["detail"].split(" ")[0] for e in ready.json()["errors"]] == ["temporal"]


async def test_the_worker_listener_says_not_ready_while_its_database_is_away_and_serves_sdk_metrics(
    dev_server: WorkflowEnvironment, tmp_path: Path, sink: MailSink
) -> None:
    settings = settings_of(
        database_url=unreachable_databases(tmp_path)["postgres"],
        task_queue=f"accounts-test-{uuid.uuid4()}",
        worker_metrics_port=0,
        var_dir=tmp_path / "var",
        smtp_port=sink.port,
    )
    ops = WorkerOps(settings)
    target = dev_server.client.service_client.config.target_host
    client = await Client.connect(target, data_converter=data_converter(settings), runtime=ops.runtime)
    engine = create_engine(settings.database_url)
    worker = build_worker(client, settings, session_factory(engine))
    try:
        async with ops.serving(engine, client, *worker.workers) as listener, worker, httpx.AsyncClient() as http:
            assert listener is not None
            base = f"http://127.0.0.1:{listener.port}"

            async def only_the_database_down() -> bool:  # the worker itself polls a moment after the start
                ready = await http.get(f"{base}/health/ready")
                assert ready.status_code == 503 and ready.headers["retry-after"] == "5"
                return [e["detail"].split(" ")[0] for e in ready.json()["errors"]] == ["database"]

            await eventually(only_the_database_down, timeout=10)
            assert (await http.get(f"{base}/health/live")).status_code == 200

            async def polls_counted() -> bool:
                found = samples((await http.get(f"{base}/metrics")).text)
                return any(name.startswith("temporal_") for name, _ in found)

            await eventually(polls_counted)
    finally:
        await engine.dispose()


# --- tracing ----------------------------------------------------------------------------------------------


def test_without_an_endpoint_nothing_of_opentelemetrys_sdk_is_loaded(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from accounts.settings import Settings\n"
        "import worker, api.app\n"
        "from accounts.tracing import Tracing\n"
        "from accounts.worker_ops import WorkerOps\n"
        "settings = Settings(_env_file=None)\n"
        "assert Tracing(settings).interceptors == [] and not Tracing(settings).enabled\n"
        "assert WorkerOps(settings).interceptors == []\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk', 'opentelemetry.exporter',"
        " 'temporalio.contrib.opentelemetry')))\n"
        "assert not loaded, loaded\n"
        "print('clean')\n"
    )
    environment = checkout_env({k: v for k, v in os.environ.items() if not k.startswith("ACCOUNTS_")})
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout.strip() == "clean", done.stderr


async def test_with_tracing_on_a_registration_is_one_trace_from_the_client_to_its_activities(
    dev_server: WorkflowEnvironment, sqlite_database: Database, sink: MailSink, tmp_path: Path
) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    settings = settings_of(
        database_url=sqlite_database.url,
        task_queue=f"accounts-test-{uuid.uuid4()}",
        smtp_host="127.0.0.1",
        smtp_port=sink.port,
        customer_reference_prefix=sqlite_database.reference_prefix,
        var_dir=tmp_path / "var",
    )
    exporter = InMemorySpanExporter()
    tracing = Tracing(settings, exporter=exporter)
    assert tracing.enabled
    target = dev_server.client.service_client.config.target_host
    client = await Client.connect(target, data_converter=data_converter(settings), interceptors=tracing.interceptors)
    async with build_worker(client, settings, sqlite_database.sessions):
        accounts = AccountsClient(client, settings, sqlite_database.sessions)
        email = unique_email("traced")
        registered = await accounts.register(Registration(email=email, channel="storefront", locale="en_US"))
        await sink.wait_for(lambda m: email in m.to, timeout=20)  # the verification email: activities ran
    assert tracing.flush()
    tracing.shutdown()
    spans = exporter.get_finished_spans()
    names = {span.name for span in spans}
    assert {
        "StartUpdateWithStartWorkflow:RegistrationWorkflow",
        "RunWorkflow:RegistrationWorkflow",
        "RunActivity:create_customer",
        "RunActivity:send_token_link",
    } <= names, sorted(names)
    traces = {
        span.context.trace_id for span in spans if span.name.endswith(("RegistrationWorkflow", "create_customer"))
    }
    assert len(traces) == 1  # the worker's spans continue the client's trace
    assert all(email not in json.dumps(dict(span.attributes or {}), default=str) for span in spans)
    assert registered.workflow_id in {str((span.attributes or {}).get("temporalWorkflowID")) for span in spans}
