"""`accounts dev` as a user runs it: one command starts everything, Ctrl-C stops everything, state survives."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import os
import re
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ACCOUNTS, CHECKOUT, follow_link, free_port, registration_body, unique_email

pytestmark = pytest.mark.e2e
PASSWORD = "Vq8#nT2!pLm4-kettle"


class DevStack:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.api_port = free_port()
        self.environment = {
            **{k: v for k, v in os.environ.items() if not k.startswith("ACCOUNTS_")},
            "PYTHONPATH": CHECKOUT,
            # no ACCOUNTS_PUBLIC_URL: the links must follow ACCOUNTS_API_PORT by themselves
            "ACCOUNTS_VAR_DIR": str(workdir / "var"),
            "ACCOUNTS_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'var' / 'accounts.db'}",
            "ACCOUNTS_API_PORT": str(self.api_port),
            "ACCOUNTS_DEV_TEMPORAL_PORT": str(free_port()),
            "ACCOUNTS_DEV_UI_PORT": str(free_port()),
            "ACCOUNTS_DEV_SMTP_PORT": str(free_port()),
            "ACCOUNTS_ARGON2_MEMORY_COST": "8192",
            "COLUMNS": "40",  # a narrow terminal: the printed links must still come whole
        }
        self.process: asyncio.subprocess.Process | None = None
        self.output = b""

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *ACCOUNTS,
            "dev",
            cwd=self.workdir,
            env=self.environment,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        async with httpx.AsyncClient() as http:
            for _ in range(240):
                assert self.process.returncode is None, await self.stop()
                try:
                    if (await http.get(f"http://127.0.0.1:{self.api_port}/health")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.25)
        raise AssertionError(f"accounts dev did not come up:\n{await self.stop()}")

    async def stop(self) -> str:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGINT)  # Ctrl-C
        stdout, _ = await asyncio.wait_for(self.process.communicate(), 60)
        self.output = stdout
        return stdout.decode(errors="replace")

    def mails(self) -> list[Any]:
        folder = self.workdir / "var" / "mail"
        return [
            email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            for path in sorted(folder.glob("*.eml"))
        ]


async def test_accounts_dev_runs_the_whole_stack_and_stops_cleanly(tmp_path: Path) -> None:
    dev = DevStack(tmp_path)
    await dev.start()
    address = unique_email()
    try:
        base = f"http://127.0.0.1:{dev.api_port}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            # the UI decodes payloads through this API's codec (staff only; the key is the one under var/)
            ui = await http.get(f"http://127.0.0.1:{dev.environment['ACCOUNTS_DEV_UI_PORT']}/api/v1/settings")
            assert ui.json()["Codec"]["Endpoint"] == f"http://localhost:{dev.api_port}/backoffice/codec"
            assert (await http.post("/backoffice/codec/decode", json={"payloads": []})).status_code == 401
            assert (tmp_path / "var" / "payload-key").exists()
            body = registration_body(address, PASSWORD, firstName="Grace", lastName="Hopper")
            created = await http.post("/customers", json=body)
            assert created.status_code == 201, created.text
            reference = created.json()["data"]["id"]

            for _ in range(100):
                if dev.mails():
                    break
                await asyncio.sleep(0.1)
            message = dev.mails()[0]
            assert message["To"] == address
            text = message.get_body(preferencelist=("plain",)).get_content()
            link = re.search(r"http://\S+/register/confirm\?token=\S+", text)
            assert link is not None
            decoded = sorted((tmp_path / "var" / "mail").glob("*.txt"))[0].read_text("utf-8").splitlines()
            assert link.group(0) in decoded and f"To: {address}" in decoded  # beside the quoted-printable .eml
            page = await follow_link(http, link.group(0))
            assert page.status_code == 200 and "Your account is active" in page.text
    finally:
        output = await dev.stop()

    assert dev.process is not None and dev.process.returncode == 0, output
    assert address in output and "/register/confirm?token=" in output  # the sink prints every email
    assert link.group(0) in output.splitlines()  # on a line of its own, never wrapped (COLUMNS=40)
    assert (tmp_path / "var" / "temporal.db").exists()

    # State survives a restart: the finished run is still there for support to inspect.
    await dev.start()
    try:
        status = await asyncio.create_subprocess_exec(
            *ACCOUNTS,
            "status",
            reference,
            "--json",
            cwd=tmp_path,
            env={
                **dev.environment,
                "ACCOUNTS_TEMPORAL_ADDRESS": f"127.0.0.1:{dev.environment['ACCOUNTS_DEV_TEMPORAL_PORT']}",
            },
            stdout=asyncio.subprocess.PIPE,
        )
        stdout, _ = await asyncio.wait_for(status.communicate(), 60)
    finally:
        await dev.stop()
    assert json.loads(stdout)["stage"] == "verified"
