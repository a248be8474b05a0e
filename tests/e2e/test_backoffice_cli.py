"""The back-office CLI (`accounts customers|notes|groups ...`) run as a process against the test stack."""

from __future__ import annotations

import asyncio
import csv
import getpass
import io
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from conftest import Database, Stack, StackFactory

pytestmark = pytest.mark.e2e


@pytest_asyncio.fixture
async def e2e(stack: StackFactory, dev_server: Any, database: Database) -> AsyncIterator[Stack]:
    async with stack(dev_server, database) as built:
        yield built


async def cli(stack: Stack, cwd: Path, *args: str) -> tuple[int, str, str]:
    settings = stack.settings
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "accounts"),
        *args,
        cwd=cwd,
        env={
            **os.environ,
            "ACCOUNTS_DATABASE_URL": settings.database_url,
            "ACCOUNTS_TEMPORAL_ADDRESS": stack.client.service_client.config.target_host,
            "ACCOUNTS_TASK_QUEUE": settings.task_queue,
            "ACCOUNTS_CUSTOMER_REFERENCE_PREFIX": settings.customer_reference_prefix,
            "COLUMNS": "200",
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def cli_json(stack: Stack, cwd: Path, *args: str) -> Any:
    code, stdout, stderr = await cli(stack, cwd, *args, "--json")
    assert code == 0, stderr
    return json.loads(stdout)


async def test_every_back_office_command_with_json_and_the_agent_in_the_trail(e2e: Stack, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:10]
    email, group = f"cli-{tag}@example.com", f"cli-group-{tag}"
    agent = ("--agent", f"alice-{tag}")

    created = await cli_json(e2e, tmp_path, "customers", "create", email, "--first-name", "Grace", "--last-name",
                             "Hopper", "--send-password-token", *agent)  # fmt: skip
    reference = created["customerReference"]
    assert created["passwordTokenSent"] is True
    await e2e.mail_to(email, "confirm")
    await e2e.mail_to(email, "choose your password")

    listed = await cli_json(e2e, tmp_path, "customers", "list", "--search", tag, "--status", "unverified")
    assert [row["customerReference"] for row in listed["data"]] == [reference] and listed["total"] == 1

    note = await cli_json(e2e, tmp_path, "notes", "add", reference, "called about the invoice", *agent)
    assert note["author"] == f"alice-{tag}"
    default_agent = await cli_json(e2e, tmp_path, "notes", "add", reference, "second note")
    assert default_agent["author"] == f"cli:{getpass.getuser()}"
    notes = await cli_json(e2e, tmp_path, "notes", "list", reference)
    assert [n["message"] for n in notes] == ["second note", "called about the invoice"]

    made = await cli_json(e2e, tmp_path, "groups", "create", group, "--description", "from the CLI", *agent)
    assert (made["name"], made["members"]) == (group, 0)
    assert (await cli(e2e, tmp_path, "groups", "assign", group, reference, *agent))[0] == 0
    groups = {g["name"]: g for g in await cli_json(e2e, tmp_path, "groups", "list")}
    assert groups[group]["members"] == 1
    members = await cli_json(e2e, tmp_path, "customers", "list", "--group", group)
    assert [row["customerReference"] for row in members["data"]] == [reference]

    edited = await cli_json(e2e, tmp_path, "customers", "edit", reference, "--first-name", "Amazing", *agent)
    assert edited["changed"] == ["first_name"]
    address = await cli_json(e2e, tmp_path, "customers", "add-address", reference, "--first-name", "G", "--last-name",
                             "H", "--address1", "Main St", "--address2", "1", "--zip-code", "10115", "--city",
                             "Berlin", "--iso2-code", "de", *agent)  # fmt: skip
    assert (address["iso2Code"], address["isDefaultBilling"]) == ("DE", True)

    shown = await cli_json(e2e, tmp_path, "customers", "show", reference)
    assert (shown["firstName"], shown["status"], shown["channel"]) == ("Amazing", "unverified", "backoffice")
    assert [g["name"] for g in shown["groups"]] == [group] and len(shown["notes"]) == 2
    assert shown["lifecycle"]["status"] == "ok"
    assert {run["kind"] for run in shown["lifecycle"]["runs"]} >= {"registration", "password-reset"}

    export = tmp_path / "customers.csv"
    code, _, stderr = await cli(e2e, tmp_path, "customers", "export", str(export), "--search", tag)
    assert code == 0, stderr
    rows = list(csv.DictReader(io.StringIO(export.read_text(encoding="utf-8"))))
    assert [(r["customerReference"], r["firstName"], r["groups"]) for r in rows] == [(reference, "Amazing", group)]

    for command in (("groups", "rename", group, f"{group}-2"), ("groups", "describe", f"{group}-2", ""),
                    ("groups", "unassign", f"{group}-2", reference), ("groups", "delete", f"{group}-2")):  # fmt: skip
        code, _, stderr = await cli(e2e, tmp_path, *command, *agent)
        assert code == 0, (command, stderr)
    assert group not in {g["name"] for g in await cli_json(e2e, tmp_path, "groups", "list")}

    code, _, stderr = await cli(e2e, tmp_path, "customers", "delete", reference, "--yes", *agent)
    assert code == 0, stderr
    await e2e.mail_to(email, "deleted")
    trail = await cli_json(e2e, tmp_path, "customers", "events", reference)
    times = [event["occurredAt"] for event in trail]
    assert times == sorted(times, reverse=True)
    by_alice = {e["event"] for e in trail if e["actor"] == f"alice-{tag}" and e["channel"] == "backoffice"}
    assert by_alice >= {"customer_created", "password_token_sent", "note_added", "group_assigned",
                        "group_unassigned", "profile_updated", "address_added", "customer_anonymized"}  # fmt: skip


async def test_refusals_exit_with_a_reason_and_change_nothing(e2e: Stack, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:10]
    code, _, stderr = await cli(e2e, tmp_path, "groups", "create", tag + "g" * 61)
    assert code == 1 and "70 characters" in stderr
    code, _, stderr = await cli(e2e, tmp_path, "customers", "list", "--sort", "password_hash")
    assert code == 1 and "sort" in stderr
    code, _, stderr = await cli(e2e, tmp_path, "notes", "add", "DE--0", "hello")
    assert code == 1 and "CustomerNotFound" in stderr
    assert tag not in json.dumps(await cli_json(e2e, tmp_path, "groups", "list"))
