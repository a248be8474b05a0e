"""docker-compose.yml's service commands, run on this machine: a broken one fails here, without Docker.

tests/test_deployment.py reads the files; this runs what they say. The `migrate`, `jwt-key`, `worker` and
`api` services' entrypoint and command and their environment (the image's ENV from the Dockerfile, then
the service's `environment:`, interpolated as Compose does with the values a user puts into `.env`) are
taken from the YAML as they are. Only what names the compose network or the container is replaced by
this machine's counterpart: the `postgresql` host by a fresh database on the local PostgreSQL, `temporal`
by the dev server fixture, `mailpit` by the SMTP sink, the published API port by a free one, paths under
the image's WORKDIR (/app) by a temporary directory, plus a task queue and reference prefix of the
test's own (the dev server is shared). Then the jobs must exit 0 in compose's order, the worker must poll
and the API answer, and a registration must go through both, link and welcome email included.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import secrets
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from conftest import PG_ADMIN_DSN, _postgres_available, follow_link, free_port, registration_body
from faults.processes import ServiceProcess
from sqlalchemy.engine import make_url
from test_deployment import INTERPOLATION, SERVICES, depends_on, dockerfile_instructions

from devstack.mailsink import MailSink

pytestmark = pytest.mark.e2e
WORKDIR = "/app"  # the Dockerfile's
JOBS = ("migrate", "jwt-key")  # one-shot, in this order (jwt-key needs no database, migrate comes first anyway)
LONG_RUNNING = ("worker", "api")
PASSWORD = "Vq8#nT2!pLm4-kettle"
# compose-network host names in a value: every one must have been replaced by then
HOSTS = re.compile(r"(?:^|[/@])(" + "|".join(map(re.escape, SERVICES)) + r")(?=[:/]|$)")


def interpolate(value: str, dotenv: dict[str, str]) -> str:
    """Compose's interpolation with `dotenv` as the shell and .env: ${X}, ${X:-d}, ${X-d}, ${X:?e}, $$."""

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        given = dotenv.get(name)
        if op == ":-":
            return given or arg
        if op == "-":
            return arg if given is None else given
        if op in (":?", "?") and not given:
            raise AssertionError(f"compose refuses to start without {name}: {arg}")
        return given or ""

    return INTERPOLATION.sub(substitute, value.replace("$$", "\0")).replace("\0", "$")


def image_environment() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in dockerfile_instructions():
        if word == "ENV":
            for pair in rest.split():
                key, value = pair.split("=", 1)
                env[key] = value
    return env


def service_environment(name: str, dotenv: dict[str, str]) -> dict[str, str]:
    declared = SERVICES[name].get("environment") or {}
    if isinstance(declared, list):
        declared = dict(item.split("=", 1) if "=" in item else (item, None) for item in declared)
    env = image_environment()
    for key, value in declared.items():
        if value is None:  # `KEY:` passes the shell's (or .env's) value through, when there is one
            if key in dotenv:
                env[key] = dotenv[key]
        else:
            env[key] = interpolate(str(value), dotenv)
    return env


def service_command(name: str) -> list[str]:
    """entrypoint + command, as the container runs them; the image's CMD when the service gives none."""
    service = SERVICES[name]
    parts: list[str] = []
    for key in ("entrypoint", "command"):
        value = service.get(key)
        parts.extend(value if isinstance(value, list) else value.split() if value else [])
    if not parts:
        cmd = [rest for word, rest in dockerfile_instructions() if word == "CMD"][-1]
        parts = list(json.loads(cmd))
    return [interpolate(str(part), {}) for part in parts]


def in_app(value: str, app: Path) -> str:
    """A path under the image's WORKDIR, here under `app`."""
    return str(app) + value[len(WORKDIR) :] if value == WORKDIR or value.startswith(WORKDIR + "/") else value


def on_this_machine(env: dict[str, str], local: dict[str, Any], app: Path) -> dict[str, str]:
    """Replace what names the compose network or the container by its counterpart here."""
    out = dict(env)
    database = make_url(out["ACCOUNTS_DATABASE_URL"])
    assert database.drivername == "postgresql+asyncpg" and database.host in SERVICES, database
    out["ACCOUNTS_DATABASE_URL"] = local["database_url"]
    assert out["ACCOUNTS_TEMPORAL_ADDRESS"].split(":")[0] in SERVICES
    out["ACCOUNTS_TEMPORAL_ADDRESS"] = local["temporal_address"]
    if "ACCOUNTS_SMTP_HOST" in out:
        assert out["ACCOUNTS_SMTP_HOST"] in SERVICES
        out["ACCOUNTS_SMTP_HOST"], out["ACCOUNTS_SMTP_PORT"] = "127.0.0.1", str(local["smtp_port"])
    if "ACCOUNTS_API_PORT" in out:
        out["ACCOUNTS_API_HOST"], out["ACCOUNTS_API_PORT"] = "127.0.0.1", str(local["api_port"])
    # the metrics listeners' ports are the container's own; here another stack may hold them
    if "ACCOUNTS_METRICS_HOST" in out:
        out["ACCOUNTS_METRICS_HOST"] = "127.0.0.1"
    for port in ("ACCOUNTS_API_METRICS_PORT", "ACCOUNTS_WORKER_METRICS_PORT"):
        if port in out:
            out[port] = str(local["metrics_ports"][port])
    # the links in emails point at the published API port; here that is the free one
    out["ACCOUNTS_PUBLIC_URL"] = re.sub(r"//[^/]+:8000", f"//127.0.0.1:{local['api_port']}", out["ACCOUNTS_PUBLIC_URL"])
    out = {key: in_app(value, app) for key, value in out.items()}
    # the dev server is shared with other tests: this stack's own queue and references
    out.setdefault("ACCOUNTS_TASK_QUEUE", local["task_queue"])
    out.setdefault("ACCOUNTS_CUSTOMER_REFERENCE_PREFIX", local["reference_prefix"])
    leftover = {key: value for key, value in out.items() if HOSTS.search(value) and not value.startswith(str(app))}
    assert leftover == {}, f"this test does not know how to run these here: {leftover}"
    return out


@contextlib.asynccontextmanager
async def fresh_postgres() -> AsyncIterator[str]:
    """An empty database on the local PostgreSQL (the `migrate` service creates the tables)."""
    if not await _postgres_available():
        if os.environ.get("ACCOUNTS_TEST_REQUIRE_POSTGRES"):
            pytest.fail(f"ACCOUNTS_TEST_REQUIRE_POSTGRES is set but no PostgreSQL answers at {PG_ADMIN_DSN}")
        pytest.skip(f"no PostgreSQL server answers at {PG_ADMIN_DSN}")
    name = f"accounts_compose_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield str(make_url(PG_ADMIN_DSN).set(drivername="postgresql+asyncpg", database=name))
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def test_the_services_run_here_are_the_app_services_and_their_order_is_composes() -> None:
    assert {"migrate", "jwt-key", "worker", "api"} <= set(SERVICES)
    assert depends_on("worker")["migrate"] == "service_completed_successfully"
    assert depends_on("api")["migrate"] == "service_completed_successfully"
    assert depends_on("api")["jwt-key"] == "service_completed_successfully"
    for name in (*JOBS, *LONG_RUNNING):
        assert service_command(name)[0] == "accounts", f"{name} runs {service_command(name)}"


async def test_the_migrate_worker_and_api_services_commands_serve_a_registration(
    dev_server: Any, sink: MailSink, tmp_path: Path
) -> None:
    app = tmp_path / "app"
    for directory in ("var/keys", "var/imports"):  # the Dockerfile makes them (the volumes mount there)
        (app / directory).mkdir(parents=True)
    # what a user writes into .env beside docker-compose.yml (README, docs/operations.md)
    dotenv = {
        "ACCOUNTS_SECRET_KEY": secrets.token_hex(32),
        "ACCOUNTS_PAYLOAD_ENCRYPTION_KEY": base64.b64encode(os.urandom(32)).decode(),
        "ACCOUNTS_MFA_ENCRYPTION_KEY": base64.b64encode(os.urandom(32)).decode(),
    }
    api_port = free_port()
    async with fresh_postgres() as database_url:
        local = {
            "database_url": database_url,
            "temporal_address": dev_server.client.service_client.config.target_host,
            "smtp_port": sink.port,
            "api_port": api_port,
            "metrics_ports": {"ACCOUNTS_API_METRICS_PORT": free_port(), "ACCOUNTS_WORKER_METRICS_PORT": free_port()},
            "task_queue": f"compose-{uuid.uuid4()}",
            "reference_prefix": f"CO{uuid.uuid4().hex[:6].upper()}--",
        }
        processes = {
            name: ServiceProcess(
                name,
                [in_app(argument, app) for argument in service_command(name)],
                on_this_machine(service_environment(name, dotenv), local, app),
                app,  # WORKDIR: no .env of the checkout is read
                tmp_path / f"{name}.log",
            )
            for name in (*JOBS, *LONG_RUNNING)
        }
        try:
            for name in JOBS:
                processes[name].start()
                assert await processes[name].finished() == 0, f"{name}:\n{processes[name].log_tail()}"
            for name in LONG_RUNNING:
                processes[name].start()
            queue = on_this_machine(service_environment("worker", dotenv), local, app)["ACCOUNTS_TASK_QUEUE"]
            await asyncio.gather(
                processes["api"].listening(api_port), processes["worker"].polling(dev_server.client, queue)
            )

            email = f"compose-{uuid.uuid4().hex[:10]}@example.com"
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}", timeout=30) as http:
                created = await http.post("/customers", json=registration_body(email, PASSWORD))
                assert created.status_code == 201, created.text
                verify = await sink.wait_for(lambda m: email in m.to and "confirm" in m.subject, timeout=20)
                link = next(link for link in verify.links if "token=" in link)
                assert link.startswith(f"http://127.0.0.1:{api_port}/")
                assert (await follow_link(http, link)).status_code == 200
            await sink.wait_for(lambda m: email in m.to and "Welcome" in m.subject, timeout=20)
            # what the worker's healthcheck and a Prometheus beside the stack ask, on the ports the
            # compose environment names (their counterparts here)
            async with httpx.AsyncClient(timeout=10) as http:
                ports = local["metrics_ports"]
                ready = await http.get(f"http://127.0.0.1:{ports['ACCOUNTS_WORKER_METRICS_PORT']}/health/ready")
                assert ready.status_code == 200, ready.text
                scraped = await http.get(f"http://127.0.0.1:{ports['ACCOUNTS_API_METRICS_PORT']}/metrics")
                assert scraped.status_code == 200
                assert 'accounts_registrations_total{event="started"} 1.0' in scraped.text

            # `docker compose stop` sends SIGTERM: both end cleanly, well within the grace period (uvicorn
            # re-raises the signal once it has shut down gracefully: the API ends "killed" by it)
            codes = await asyncio.gather(*(processes[name].stop(timeout=30) for name in LONG_RUNNING))
            assert codes == [0, -signal.SIGTERM], [processes[name].log_tail() for name in LONG_RUNNING]
        finally:
            for process in processes.values():
                process.kill()
