"""The back-office CLI (`accounts customers|notes|groups ...`) run as a process against the test stack."""

from __future__ import annotations

import asyncio
import base64
import csv
import getpass
import io
import json
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from conftest import ACCOUNTS, Database, Stack, StackFactory, checkout_env

from accounts.staff import StaffDirectory

pytestmark = pytest.mark.e2e


@pytest_asyncio.fixture
async def e2e(stack: StackFactory, dev_server: Any, database: Database) -> AsyncIterator[Stack]:
    async with stack(dev_server, database) as built:
        yield built


async def cli(
    stack: Stack, cwd: Path, *args: str, columns: int = 200, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    settings = stack.settings
    process = await asyncio.create_subprocess_exec(
        *ACCOUNTS,
        *args,
        cwd=cwd,
        env=checkout_env(
            {
                **os.environ,
                "ACCOUNTS_DATABASE_URL": settings.database_url,
                "ACCOUNTS_VAR_DIR": str(settings.var_dir),  # where an import's file rests, read by the worker
                "ACCOUNTS_TEMPORAL_ADDRESS": stack.client.service_client.config.target_host,
                "ACCOUNTS_TASK_QUEUE": settings.task_queue,
                "ACCOUNTS_CUSTOMER_REFERENCE_PREFIX": settings.customer_reference_prefix,
                "ACCOUNTS_ARGON2_TIME_COST": "1",
                "ACCOUNTS_ARGON2_MEMORY_COST": "8192",
                "ACCOUNTS_ARGON2_PARALLELISM": "1",
                "COLUMNS": str(columns),
                **(env or {}),
            }
        ),
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

    edited = await cli_json(e2e, tmp_path, "customers", "edit", reference, "--first-name", "Amazing", "--last-name",
                            "Hopper", *agent)  # fmt: skip
    assert edited["changed"] == ["first_name"]  # the last name was Hopper already
    code, stdout, _ = await cli(e2e, tmp_path, "customers", "edit", reference, "--first-name", "Amazing", *agent)
    assert code == 0 and "unchanged" in stdout and "updated" not in stdout
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


async def test_values_to_copy_are_printed_whole_in_80_columns(e2e: Stack, tmp_path: Path) -> None:
    email = f"wide-{uuid.uuid4().hex[:10]}@example.com"
    created = await cli_json(
        e2e, tmp_path, "customers", "create", email, "--first-name", "Grace", "--last-name", "Hopper"
    )
    reference = created["customerReference"]
    address = await cli_json(e2e, tmp_path, "customers", "add-address", reference, "--first-name", "Grace",
                             "--last-name", "Hopper", "--address1", "A rather long street name in the old town",
                             "--address2", "12a", "--zip-code", "10115", "--city", "Berlin-Charlottenburg",
                             "--iso2-code", "DE")  # fmt: skip
    code, stdout, stderr = await cli(e2e, tmp_path, "customers", "show", reference, columns=80)
    assert code == 0, stderr
    assert address["uuid"] in stdout  # not cut short with "…" nor folded
    lines = stdout.splitlines()
    links = [line for line in lines if line.startswith(f"registration:{reference}: http")]
    assert len(links) == 1 and links[0].endswith("/history") and len(links[0]) > 80, lines

    code, stdout, stderr = await cli(e2e, tmp_path, "status", reference, columns=80)
    assert code == 0, stderr
    link = f"Temporal UI: http://localhost:8233/namespaces/default/workflows/registration:{reference}"
    assert link in stdout.splitlines()


async def test_a_run_sealed_with_a_key_this_process_lacks_is_one_line_not_a_traceback(
    e2e: Stack, tmp_path: Path
) -> None:
    # a second stack's CLI left with ACCOUNTS_TEMPORAL_ADDRESS pointing at this one's Temporal (a README walk)
    email = f"sealed-{uuid.uuid4().hex[:10]}@example.com"
    created = await cli_json(e2e, tmp_path, "customers", "create", email, "--first-name", "Ada", "--last-name", "Lee")
    reference = created["customerReference"]
    foreign = {"ACCOUNTS_PAYLOAD_ENCRYPTION_KEY": base64.b64encode(os.urandom(32)).decode()}
    code, _, stderr = await cli(e2e, tmp_path, "status", reference, env=foreign)
    assert code == 1 and "Traceback" not in stderr, stderr
    assert "a payload is encrypted with key" in stderr and "ACCOUNTS_TEMPORAL_ADDRESS" in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr


async def test_staff_commands_list_disable_enable_and_say_why_nothing_was_done(e2e: Stack, tmp_path: Path) -> None:
    name = f"dora-{uuid.uuid4().hex[:8]}"
    code, stdout, _ = await cli(e2e, tmp_path, "staff", "create", name)
    assert code == 0 and stdout.strip().splitlines()[-1].startswith("stf_")
    code, stdout, stderr = await cli(e2e, tmp_path, "staff", "create", name, "--role", "admin")
    # the refusal on stderr: `KEY=$(accounts staff create ...)` captures no sentence as a key
    assert code == 1 and f"cannot create {name}: a staff member named {name} already exists" in stderr
    assert stdout == "" and "stf_" not in stderr

    listed = {m["name"]: m for m in await cli_json(e2e, tmp_path, "staff", "list")}
    assert {k: v for k, v in listed[name].items() if k != "createdAt"} == {
        "name": name, "role": "support", "email": None, "disabledAt": None, "webPassword": False,
    }  # fmt: skip
    code, stdout, _ = await cli(e2e, tmp_path, "staff", "disable", name)
    assert code == 0 and f"{name} disabled" in stdout
    disabled = {m["name"]: m for m in await cli_json(e2e, tmp_path, "staff", "list")}[name]
    assert disabled["disabledAt"] is not None
    code, stdout, _ = await cli(e2e, tmp_path, "staff", "list")
    assert code == 0 and name in stdout
    code, stdout, _ = await cli(e2e, tmp_path, "staff", "disable", name)
    assert code == 0 and "already disabled" in stdout
    code, stdout, _ = await cli(e2e, tmp_path, "staff", "enable", name)
    assert code == 0 and f"{name} enabled" in stdout
    assert {m["name"]: m for m in await cli_json(e2e, tmp_path, "staff", "list")}[name]["disabledAt"] is None
    code, stdout, stderr = await cli(e2e, tmp_path, "staff", "disable", "nobody-here")
    assert code == 1 and "no staff member named nobody-here" in stderr and stdout == ""


async def test_a_new_key_replaces_a_lost_one_and_the_old_one_stops_working(e2e: Stack, tmp_path: Path) -> None:
    name = f"nora-{uuid.uuid4().hex[:8]}"
    code, stdout, _ = await cli(e2e, tmp_path, "staff", "create", name)
    assert code == 0
    old = stdout.strip().splitlines()[-1]
    code, stdout, _ = await cli(e2e, tmp_path, "staff", "new-key", name)
    assert code == 0 and "shown this once" in stdout
    new = stdout.strip().splitlines()[-1]
    assert new.startswith("stf_") and new != old
    directory = StaffDirectory.from_settings(e2e.database.sessions, e2e.settings)  # as the API checks a key
    member = await directory.authenticate(new)
    assert member is not None and member.name == name
    assert await directory.authenticate(old) is None
    code, stdout, stderr = await cli(e2e, tmp_path, "staff", "new-key", "nobody-here")
    assert code == 1 and "no staff member named nobody-here" in stderr and stdout == ""


async def test_a_staff_email_is_set_at_creation_changed_checked_and_cleared(e2e: Stack, tmp_path: Path) -> None:
    name = f"edda-{uuid.uuid4().hex[:8]}"

    async def email_of(member: str) -> Any:
        return {m["name"]: m for m in await cli_json(e2e, tmp_path, "staff", "list")}[member]["email"]

    code, _, stderr = await cli(e2e, tmp_path, "staff", "create", name, "--email", "not an address")
    assert code == 1 and "not a valid email address" in stderr
    code, _, _ = await cli(e2e, tmp_path, "staff", "create", name, "--email", " Edda@Example.com ")
    assert code == 0 and await email_of(name) == "Edda@Example.com"  # as typed (trimmed), as customers' are
    code, stdout, _ = await cli(e2e, tmp_path, "staff", "set-email", name, "edda@shop.example")
    assert code == 0 and f"email of {name} (support) set" in stdout
    assert await email_of(name) == "edda@shop.example"
    code, _, stderr = await cli(e2e, tmp_path, "staff", "set-email", name, "edda@")
    assert code == 1 and "email refused" in stderr and await email_of(name) == "edda@shop.example"
    code, stdout, _ = await cli(e2e, tmp_path, "staff", "list")
    assert code == 0 and "edda@shop.example" in stdout
    code, stdout, _ = await cli(e2e, tmp_path, "staff", "set-email", name, "--clear")
    assert code == 0 and "cleared" in stdout and await email_of(name) is None
    code, _, stderr = await cli(e2e, tmp_path, "staff", "set-email", name)  # neither an address nor --clear
    assert code == 2 and "--clear" in stderr
    code, _, stderr = await cli(e2e, tmp_path, "staff", "set-email", "nobody-here", "x@example.com")
    assert code == 1 and "no staff member named nobody-here" in stderr


async def test_outside_the_project_directory_the_cli_names_the_missing_database(tmp_path: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ACCOUNTS_")}
    for command in (("staff", "list"), ("customers", "list")):
        process = await asyncio.create_subprocess_exec(
            *ACCOUNTS, *command, cwd=tmp_path, env=checkout_env({**environment, "COLUMNS": "80"}),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, stderr = await asyncio.wait_for(process.communicate(), 60)
        error = stderr.decode()
        assert process.returncode == 1, error
        assert "Traceback" not in error and len(error.strip().splitlines()) == 1, error
        expected = f"no accounts database at {(tmp_path / 'var' / 'accounts.db').resolve()}: run `accounts db upgrade`"
        assert error.startswith(expected), error
