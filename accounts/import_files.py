"""Where an uploaded customer.csv rests: `var_dir/imports/<import id>.csv`, beside what the import derives
from it (`<id>.index.json`: where its batches start; `<id>.rejected/<batch>.csv`: its rejected rows).

The file holds personal data and password hashes, so it never enters a Temporal payload: the workflow
carries the import id and the file's SHA-256. Indexing checks the whole file against it once and keeps
each batch's own SHA-256 in the index; a batch then checks only the bytes it reads (hashing the whole
file before every batch made an import quadratic in its size). The workflow deletes the upload when the
import ends (`discard`); the index and rejected rows stay for the report and the download.
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


def batch_digests(var_dir: Path, import_id: str, sha256: str, batch_starts: list[int]) -> list[str]:
    """The SHA-256 of each batch's bytes (a batch runs from its start offset to the next one's, the last to
    the end of the file), read in the same pass that checks the whole file against the import's SHA-256."""
    path = file_path(var_dir, import_id)
    whole = hashlib.sha256()
    bounds = [*batch_starts[1:], None]
    digests: list[str] = []
    with path.open("rb") as stream:
        if batch_starts:
            whole.update(stream.read(batch_starts[0]))  # the header
        for end in bounds:
            part = hashlib.sha256()
            while end is None or stream.tell() < end:
                chunk = stream.read(1024 * 1024 if end is None else min(1024 * 1024, end - stream.tell()))
                if not chunk:
                    break
                whole.update(chunk)
                part.update(chunk)
            digests.append(part.hexdigest())
        whole.update(stream.read())  # without batches: the whole file is the header
    if whole.hexdigest() != sha256:
        raise ImportFileChanged(f"{path.name} is not the file import {import_id} started with")
    return digests


def batch_bytes(var_dir: Path, import_id: str, index: Scan, batch: int) -> bytes:
    """One batch's bytes, checked against the SHA-256 the index took of them."""
    path = file_path(var_dir, import_id)
    start = index.batches[batch][0]
    end = index.batches[batch + 1][0] if batch + 1 < len(index.batches) else None
    with path.open("rb") as stream:
        stream.seek(start)
        data = stream.read() if end is None else stream.read(end - start)
    if hashlib.sha256(data).hexdigest() != index.digests[batch]:
        raise ImportFileChanged(f"{path.name}: batch {batch} is not what import {import_id} indexed")
    return data


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
        digests=data.get("digests", []),  # an index written before batch digests: none
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
