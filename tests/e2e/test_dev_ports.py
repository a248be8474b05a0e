"""`accounts dev` beside another stack: a taken port stops it before it starts anything, in one line."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import ACCOUNTS, CHECKOUT, free_port

pytestmark = pytest.mark.e2e
WHAT = {
    "ACCOUNTS_DEV_TEMPORAL_PORT": "Temporal dev server",
    "ACCOUNTS_DEV_UI_PORT": "Temporal UI",
    "ACCOUNTS_DEV_SMTP_PORT": "SMTP sink",
    "ACCOUNTS_API_PORT": "API",
}


@pytest.mark.parametrize("setting", list(WHAT))
async def test_a_taken_port_stops_accounts_dev_before_it_starts_anything(tmp_path: Path, setting: str) -> None:
    with another_stack_listening() as port:
        returncode, lines = await accounts_dev(tmp_path, {setting: str(port)})

    assert returncode == 1
    assert lines == [f"port {port} is in use ({WHAT[setting]}); set {setting} to a free port"]
    assert not (tmp_path / "var").exists()  # no Temporal state, no database, no mail folder
    assert not processes_naming(tmp_path)  # no Temporal dev server left running with our files


async def test_ports_of_servers_it_is_given_are_not_its_to_check(tmp_path: Path) -> None:
    with another_stack_listening() as taken, another_stack_listening() as api:
        returncode, lines = await accounts_dev(
            tmp_path,
            {
                # a Temporal server and an SMTP server of its own: their ports are none of its business
                "ACCOUNTS_TEMPORAL_ADDRESS": f"127.0.0.1:{taken}",
                "ACCOUNTS_SMTP_HOST": "127.0.0.1",
                "ACCOUNTS_SMTP_PORT": str(taken),
                "ACCOUNTS_DEV_TEMPORAL_PORT": str(taken),
                "ACCOUNTS_DEV_UI_PORT": str(taken),
                "ACCOUNTS_DEV_SMTP_PORT": str(taken),
                "ACCOUNTS_API_PORT": str(api),
            },
        )

    assert returncode == 1
    assert lines == [f"port {api} is in use (API); set ACCOUNTS_API_PORT to a free port"]
    assert not (tmp_path / "var").exists()


@contextmanager
def another_stack_listening() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


async def accounts_dev(workdir: Path, settings: dict[str, str]) -> tuple[int | None, list[str]]:
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ACCOUNTS_")},
        "PYTHONPATH": CHECKOUT,
        "ACCOUNTS_VAR_DIR": str(workdir / "var"),
        "ACCOUNTS_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'var' / 'accounts.db'}",
        **{setting: str(free_port()) for setting in WHAT},
        **settings,
    }
    process = await asyncio.create_subprocess_exec(
        *ACCOUNTS,
        "dev",
        cwd=workdir,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:  # it started after all: stop it as Ctrl-C would
            process.send_signal(signal.SIGINT)
            await process.communicate()
    return process.returncode, output.decode(errors="replace").splitlines()


def processes_naming(path: Path) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(path) in text:
            found.append(text)
    return found
