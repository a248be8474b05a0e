"""`accounts import customers FILE.csv` run as a process against the test stack (issue 13): Spryker's
console report, the exit code, `--json`, `--dry-run`, `--delimiter`, a refused file, and the follow-up
commands (`status`, `rejected`)."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from conftest import Database, Stack, StackFactory
from test_backoffice_cli import cli
from test_import_http import HEADER, ImportFile, customer_count, customers_with, demo_file

pytestmark = pytest.mark.e2e


@pytest_asyncio.fixture
async def e2e(stack: StackFactory, dev_server: Any, database: Database) -> AsyncIterator[Stack]:
    async with stack(dev_server, database) as built:
        yield built


def write(tmp_path: Path, content: bytes, name: str = "customer.csv") -> str:
    path = tmp_path / name
    path.write_bytes(content)
    return str(path)


async def test_an_import_prints_sprykers_report_and_fails_for_a_rejected_row(e2e: Stack, tmp_path: Path) -> None:
    f = demo_file()
    code, stdout, stderr = await cli(e2e, tmp_path, "import", "customers", write(tmp_path, f.content()))
    assert code == 1, (stdout, stderr)  # a row failed
    lines = stdout.splitlines()
    assert lines[0] == "Importer type: customer"
    counts = re.fullmatch(r"Data set count: 4, Data set imported: 3, Data set failed: 1 \(Import id (imp_\S+), "
                          r"[\d.]+ s, [\d,]+ rows/s\)", lines[1])  # fmt: skip
    assert counts is not None, stdout
    assert [line for line in lines if line.startswith("Line ")] == [
        next(line for line in lines if line.startswith("Line 5, column email: "))
    ]
    assert "4/4" in stderr and "rows/s" in stderr and "ETA" in stderr  # the bar: on stderr, stdout is the report
    assert sorted(await customers_with(e2e, f"SPR{f.tag}-")) == [f.reference(n) for n in (1, 2, 3)]
    await e2e.mail_to(f.email(3))  # the verification (here: set-password) link

    import_id = counts[1]
    status = json.loads((await cli(e2e, tmp_path, "import", "status", import_id, "--json"))[1])
    assert (status["importId"], status["state"], status["rowsWritten"]) == (import_id, "completed", 3)
    code, _, stderr = await cli(e2e, tmp_path, "import", "cancel", import_id)
    assert code == 1 and stderr.startswith("Conflict: ")  # over: nothing left to cancel
    rejected = tmp_path / "rejected.csv"
    code, _, stderr = await cli(e2e, tmp_path, "import", "rejected", import_id, str(rejected))
    assert code == 0, stderr
    rows = list(csv.DictReader(io.StringIO(rejected.read_text(encoding="utf-8"))))
    assert [(r["customer_reference"], r["error_line"], r["error_column"]) for r in rows] == [
        (f.reference(4), "5", "email")
    ]


async def test_a_clean_file_exits_0_and_json_prints_the_final_progress(e2e: Stack, tmp_path: Path) -> None:
    f = ImportFile().add(1).add(2)
    code, stdout, stderr = await cli(e2e, tmp_path, "import", "customers", write(tmp_path, f.content(delimiter=";")),
                                     "--delimiter", ";", "--json", "--agent", "migration-job")  # fmt: skip
    assert code == 0, stderr
    done = json.loads(stdout)
    assert done["importId"].startswith("imp_") and done["state"] == "completed"
    assert (done["rowsTotal"], done["rowsCreated"], done["rowsRejected"], done["errors"]) == (2, 2, 0, [])
    assert sorted(await customers_with(e2e, f"SPR{f.tag}-")) == [f.reference(1), f.reference(2)]


async def test_a_dry_run_checks_the_whole_file_and_writes_nothing(e2e: Stack, tmp_path: Path) -> None:
    f = ImportFile().add(1, registered="").add(2, salutation="Sir")
    code, stdout, _ = await cli(e2e, tmp_path, "import", "customers", write(tmp_path, f.content()), "--dry-run")
    assert code == 1  # the unknown salutation
    assert "Data set count: 2, Data set imported: 1, Data set failed: 1" in stdout
    assert "Dry run: the file was checked, nothing was written." in stdout
    assert "Line 3, column salutation: " in stdout
    assert await customers_with(e2e, f"SPR{f.tag}-") == {}
    assert e2e.sink.to(f.email(1)) == []


async def test_the_readmes_example_file_passes_every_check(e2e: Stack, tmp_path: Path) -> None:
    """docs/examples/customer.csv, which the README's "Moving in" imports: every row is one the import takes
    (checked by a dry run, which writes nothing, so its fixed references meet no other test's)."""
    example = Path(__file__).resolve().parents[2] / "docs" / "examples" / "customer.csv"
    code, stdout, stderr = await cli(e2e, tmp_path, "import", "customers", str(example), "--dry-run")
    assert code == 0, (stdout, stderr)
    assert "Data set count: 3, Data set imported: 3, Data set failed: 0" in stdout


async def test_a_refused_file_exits_1_with_one_message_and_writes_nothing(e2e: Stack, tmp_path: Path) -> None:
    before = await customer_count(e2e)
    missing = HEADER.replace(",gender", "").encode() + b"\nDE--1,en_US,,a@example.com,Mr,A,B,,,,\n"
    code, stdout, stderr = await cli(e2e, tmp_path, "import", "customers", write(tmp_path, missing))
    assert code == 1 and stdout == ""
    assert stderr.startswith("InvalidImportFile: ") and "gender" in stderr and len(stderr.strip().splitlines()) == 1
    code, _, stderr = await cli(e2e, tmp_path, "import", "customers", str(tmp_path / "absent.csv"))
    assert code == 2 and "absent.csv" in stderr  # typer: the file does not exist
    assert await customer_count(e2e) == before
