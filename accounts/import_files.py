"""Where an uploaded customer.csv rests: `var_dir/imports/<import id>.csv`, beside what the import derives
from it (`<id>.index.json`: where its batches start; `<id>.rejected/<batch>.csv`: its rejected rows).

The file holds personal data and password hashes, so it never enters a Temporal payload: the workflow
carries the import id and the file's SHA-256, and every activity checks the hash before it reads.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import secrets
from dataclasses import asdict
from pathlib import Path

from accounts.customer_csv import Scan


class ImportFileChanged(RuntimeError):
    """The stored file is not the one the import started with (its SHA-256 differs)."""


def new_import_id() -> str:
    return f"imp_{secrets.token_hex(8)}"


def imports_dir(var_dir: Path) -> Path:
    return var_dir / "imports"


def file_path(var_dir: Path, import_id: str) -> Path:
    if not import_id.startswith("imp_") or not import_id[4:].isalnum():
        raise ValueError(f"not an import id: {import_id!r}")
    return imports_dir(var_dir) / f"{import_id}.csv"


def store(var_dir: Path, import_id: str, content: bytes) -> str:
    """Write the upload (owner-readable only) and return its SHA-256."""
    path = file_path(var_dir, import_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_bytes(content)
    partial.chmod(0o600)
    partial.replace(path)
    return hashlib.sha256(content).hexdigest()


def discard(var_dir: Path, import_id: str) -> None:
    file_path(var_dir, import_id).unlink(missing_ok=True)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def verified_path(var_dir: Path, import_id: str, sha256: str) -> Path:
    path = file_path(var_dir, import_id)
    if sha256_of(path) != sha256:
        raise ImportFileChanged(f"{path.name} is not the file import {import_id} started with")
    return path


# --- what the import derives from the file -------------------------------------------------------------


def _index_path(var_dir: Path, import_id: str) -> Path:
    return file_path(var_dir, import_id).with_suffix(".index.json")


def write_index(var_dir: Path, import_id: str, scan: Scan) -> None:
    data = asdict(scan)
    data["duplicates"] = {str(line): list(value) for line, value in scan.duplicates.items()}
    _index_path(var_dir, import_id).write_text(json.dumps(data))


def read_index(var_dir: Path, import_id: str) -> Scan:
    data = json.loads(_index_path(var_dir, import_id).read_text())
    return Scan(
        header=data["header"],
        rows=data["rows"],
        batch_size=data["batch_size"],
        batches=[(offset, line) for offset, line in data["batches"]],
        duplicates={int(line): (column, message) for line, (column, message) in data["duplicates"].items()},
    )


def _rejected_dir(var_dir: Path, import_id: str) -> Path:
    return file_path(var_dir, import_id).with_suffix(".rejected")


def write_rejected(var_dir: Path, import_id: str, batch: int, rows: list[list[str]]) -> None:
    """One file per batch, rewritten whole: a retried batch replaces its own rows.

    The password column is left empty: a rejected row's password (or hash) must not sit in a file that
    staff download. Fixed and imported again, that customer gets a set-password link instead."""
    header = read_index(var_dir, import_id).header
    if "password" in header:
        at = header.index("password")
        rows = [[*fields[:at], "", *fields[at + 1 :]] if len(fields) > at else fields for fields in rows]
    directory = _rejected_dir(var_dir, import_id)
    directory.mkdir(exist_ok=True)
    path = directory / f"{batch:08d}.csv"
    if not rows:
        path.unlink(missing_ok=True)
        return
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")
    path.chmod(0o600)


def rejected_csv(var_dir: Path, import_id: str) -> str:
    """The file's header plus error_line, error_column, error_message; then every rejected row, in order."""
    header = read_index(var_dir, import_id).header
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow([*header, "error_line", "error_column", "error_message"])
    directory = _rejected_dir(var_dir, import_id)
    parts = sorted(directory.glob("*.csv")) if directory.exists() else []
    return buffer.getvalue() + "".join(part.read_text(encoding="utf-8") for part in parts)
