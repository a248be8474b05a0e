"""Spryker's customer.csv: its columns, the checks that refuse a whole file, and the rows read by range.

    customer_reference,locale_name,phone,email,salutation,first_name,last_name,company,gender,
    date_of_birth,password,registered

The file is read as bytes, one record at a time: a record ends at a line end outside quotes (a quoted
field may hold the delimiter, quotes doubled, and line breaks), so a record's byte offset can be kept and
a batch read from there without parsing what comes before it. `scan` reads the whole file once and
refuses it (`InvalidFile`, one message) when it is empty, has a header only, lacks a required column, is
not UTF-8 or holds a record over MAX_RECORD_BYTES; it also finds the emails and references that appear
twice (the later rows are rejected). Rows themselves are checked by `check_row` (a `RowError` each).
"""

from __future__ import annotations

import csv
import functools
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import BinaryIO, Final

from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES

from accounts.email_address import email_key

COLUMNS: Final = (
    "customer_reference", "locale_name", "phone", "email", "salutation", "first_name", "last_name", "company",
    "gender", "date_of_birth", "password", "registered",
)  # fmt: skip
REQUIRED: Final = ("customer_reference", "email", "salutation", "first_name", "last_name", "gender")
SALUTATIONS: Final = ("Mr", "Mrs", "Ms", "Dr")
GENDERS: Final = ("Male", "Female")
MAX_RECORD_BYTES: Final = 1024 * 1024  # a field (a record) over 1 MB refuses the file: no shop has one
MAX_LENGTHS: Final = {
    "customer_reference": 32, "email": 255, "first_name": 100, "last_name": 100, "phone": 255, "company": 255,
    "password": 1024,
}  # fmt: skip
DELIMITERS: Final = (",", ";", "\t", "|")
_REFERENCE_NUMBER = re.compile(r"(\d+)$")
_BOM = b"\xef\xbb\xbf"
_BARE_CR = re.compile(rb"\r(?!\n)")
# the csv module refuses fields over 128 KiB; the record bound above is the one that counts
csv.field_size_limit(max(csv.field_size_limit(), MAX_RECORD_BYTES + 1))


class InvalidFile(ValueError):
    """The whole file is refused; the message says why (and nothing was written)."""


@dataclass
class RowError:
    line: int  # 1-based line in the file where the row starts (the header is line 1)
    column: str
    message: str


@dataclass
class Record:
    line: int
    offset: int  # byte offset of the record in the file
    fields: list[str]


@dataclass
class Scan:
    header: list[str]
    rows: int
    batch_size: int
    # (byte offset, line) of the first record of each batch of `batch_size` rows
    batches: list[tuple[int, int]] = field(default_factory=list)
    # line -> (column, message) for rows refused by what the file holds elsewhere (duplicates)
    duplicates: dict[int, tuple[str, str]] = field(default_factory=dict)
    digests: list[str] = field(default_factory=list)  # SHA-256 of each batch's bytes (accounts/import_files)


def check_delimiter(delimiter: str) -> str:
    if delimiter not in DELIMITERS:
        raise InvalidFile(f"the delimiter must be one of {', '.join(repr(d) for d in DELIMITERS)}")
    return delimiter


def _raw_records(stream: BinaryIO, start_line: int) -> Iterator[tuple[int, int, bytes]]:
    """(line, offset, bytes) of each record from the stream's position; a line break inside quotes continues it."""
    offset, line = stream.tell(), start_line
    parts: list[bytes] = []
    size = quotes = 0
    record_line, record_offset = line, offset
    while chunk := stream.readline(MAX_RECORD_BYTES + 1):
        if not parts:
            record_line, record_offset = line, offset
        parts.append(chunk)
        size += len(chunk)
        quotes += chunk.count(b'"')
        offset += len(chunk)
        if chunk.endswith(b"\n"):
            line += 1
        if size > MAX_RECORD_BYTES:
            raise InvalidFile(f"line {record_line}: a field is longer than 1 MB")
        if quotes % 2 == 0:
            yield record_line, record_offset, b"".join(parts)
            parts, size, quotes = [], 0, 0
    if parts:
        raise InvalidFile(f"line {record_line}: a quoted field is never closed")


def _decode(raw: bytes, line: int, delimiter: str) -> list[str]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidFile(f"line {line} is not UTF-8 text: save the file as UTF-8 (with or without BOM)") from None
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error as error:
        raise InvalidFile(f"line {line}: {error}") from None
    return [value for row in rows for value in row]


def records(stream: BinaryIO, delimiter: str, *, start_line: int = 1) -> Iterator[Record]:
    """The records from the stream's position (a leading BOM skipped at line 1), blank lines left out."""
    if start_line == 1:
        if stream.read(3) != _BOM:
            stream.seek(0)
    for line, offset, raw in _raw_records(stream, start_line):
        if not raw.strip(b"\r\n"):
            continue
        yield Record(line, offset, _decode(raw, line, delimiter))


def _check_header(header: list[str], delimiter: str) -> None:
    names = [name.strip() for name in header]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise InvalidFile(f"the header names {', '.join(duplicated)} twice")
    missing = [name for name in REQUIRED if name not in names]
    if not missing:
        return
    message = f"the header lacks the required column{'s' if len(missing) > 1 else ''} {', '.join(missing)}"
    if len(names) == 1:
        used = next((d for d in DELIMITERS if d != delimiter and d in names[0]), None)
        if used is not None:
            message += f"; the file seems to use {used!r} as its delimiter (import it with that delimiter)"
    raise InvalidFile(f"{message} (Spryker's header: {','.join(COLUMNS)})")


def scan(path: Path, delimiter: str, batch_size: int) -> Scan:
    """Read the whole file once: refuse it (InvalidFile) or say how many rows, where batches start, duplicates."""
    check_delimiter(delimiter)
    with path.open("rb") as stream:
        found: Scan | None = None
        emails: dict[str, int] = {}
        references: dict[str, int] = {}
        for record in records(stream, delimiter):
            if found is None:
                _check_header(record.fields, delimiter)
                found = Scan(header=[name.strip() for name in record.fields], rows=0, batch_size=batch_size)
                continue
            if found.rows % batch_size == 0:
                found.batches.append((record.offset, record.line))
            found.rows += 1
            row = dict(zip(found.header, record.fields, strict=False))
            reference = row.get("customer_reference", "").strip()
            email = email_key(row.get("email", ""))
            if reference and reference in references:
                message = f"This customer reference is on line {references[reference]} too."
                found.duplicates[record.line] = ("customer_reference", message)
            elif email and email in emails:
                found.duplicates[record.line] = ("email", f"This email is on line {emails[email]} too.")
            references.setdefault(reference, record.line)
            emails.setdefault(email, record.line)
    if found is None:
        raise InvalidFile("the file is empty")
    if found.rows == 0:
        raise InvalidFile("the file has a header but no rows")
    return found


def read_batch(data: bytes, delimiter: str, line: int) -> list[Record]:
    """The records of one batch's bytes (accounts/import_files.batch_bytes), the first on `line`.

    `scan` has checked these bytes (their SHA-256 proves it), so they are decoded and parsed in one go, a
    record's line taken from the reader's count of lines; `records` reads record by record to find where
    a bad file goes wrong."""
    if _BARE_CR.search(data):  # csv ends a line at a lone \r too, scan only at \n: read as scan did
        return list(records(io.BytesIO(data), delimiter, start_line=line))
    reader = csv.reader(io.StringIO(data.decode("utf-8"), newline=""), delimiter=delimiter)
    batch: list[Record] = []
    consumed = 0
    for fields in reader:
        if fields:  # a blank line reads as no fields
            batch.append(Record(line + consumed, -1, fields))
        consumed = reader.line_num
    return batch


# --- one row ---------------------------------------------------------------------------------------------


@dataclass
class CustomerRow:
    line: int
    customer_reference: str
    email: str
    salutation: str
    first_name: str
    last_name: str
    gender: str
    locale: str | None
    phone: str | None
    company: str | None
    date_of_birth: date | None
    password: str | None = field(repr=False)
    registered_at: datetime | None

    @property
    def reference_number(self) -> int:
        match = _REFERENCE_NUMBER.search(self.customer_reference)
        assert match is not None  # check_row refuses references without one
        return int(match[1])


# An ASCII dot-atom local part, which email_validator accepts as it is: the common case, checked here
# without its per-address cost (0.2 ms, the import's largest per-row cost). Everything else goes to it.
_PLAIN_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_PLAIN_LONGEST = 200  # below email_validator's length limits (64 for the local part, 254 in all) with room


def valid_email(value: str) -> str | None:
    """email_validator's normalized address (as the sign-up's), or None when it refuses the value.

    A plain address (ASCII dot-atom local part) needs only its domain checked, and a file holds few domains:
    the domain's answer is cached, so the common row costs a regex. tests/accounts/test_customer_csv.py
    compares this with email_validator over addresses of every kind."""
    local, at, domain = value.rpartition("@")
    plain = at and value.isascii() and len(value) <= _PLAIN_LONGEST and len(local) <= 64
    # RFC 2142's role mailboxes (Postmaster@...) email_validator lower-cases: left to it
    if plain and _PLAIN_LOCAL_PART.fullmatch(local) and local.lower() not in CASE_INSENSITIVE_MAILBOX_NAMES:
        normalized_domain = _valid_domain(domain)
        return None if normalized_domain is None else f"{local}@{normalized_domain}"
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError:
        return None


@functools.lru_cache(maxsize=4096)
def _valid_domain(domain: str) -> str | None:
    try:
        return validate_email(f"a@{domain}", check_deliverability=False).domain
    except EmailNotValidError:
        return None


def _date(value: str) -> date:
    return date.fromisoformat(value[:10])


def check_row(record: Record, header: list[str], locales: list[str]) -> CustomerRow | RowError:
    """The row as a customer, or the first thing wrong with it (line, column, message)."""
    line = record.line
    if len(record.fields) != len(header):
        return RowError(line, "", f"The row has {len(record.fields)} fields; the header has {len(header)}.")
    row = {name: value.strip() for name, value in zip(header, record.fields, strict=True)}
    for name in REQUIRED:
        if not row[name]:
            return RowError(line, name, "This value should not be blank.")
    for name, longest in MAX_LENGTHS.items():
        if len(row.get(name, "")) > longest:
            return RowError(line, name, f"This value is too long. It should have {longest} characters or less.")
    if not _REFERENCE_NUMBER.search(row["customer_reference"]):
        return RowError(line, "customer_reference", "A customer reference must end with a number (DE--17).")
    email = valid_email(row["email"])
    if email is None:
        return RowError(line, "email", "This value is not a valid email address.")
    if row["salutation"] not in SALUTATIONS:
        return RowError(line, "salutation", f"The salutation must be one of {', '.join(SALUTATIONS)}.")
    if row["gender"] not in GENDERS:
        return RowError(line, "gender", f"The gender must be one of {', '.join(GENDERS)}.")
    locale = row.get("locale_name") or None
    if locale is not None and locale not in locales:
        return RowError(line, "locale_name", f"The locale must be one of {', '.join(locales)}.")
    dates: dict[str, date | None] = {}
    for name in ("date_of_birth", "registered"):
        value = row.get(name, "")
        try:
            dates[name] = _date(value) if value else None
        except ValueError:
            return RowError(line, name, "This value is not a valid date (YYYY-MM-DD).")
    registered = dates["registered"]
    return CustomerRow(
        line=line,
        customer_reference=row["customer_reference"],
        email=email,
        salutation=row["salutation"],
        first_name=row["first_name"],
        last_name=row["last_name"],
        gender=row["gender"],
        locale=locale,
        phone=row.get("phone") or None,
        company=row.get("company") or None,
        date_of_birth=dates["date_of_birth"],
        password=row.get("password") or None,
        registered_at=datetime(registered.year, registered.month, registered.day, tzinfo=UTC) if registered else None,
    )


def rejected_csv_row(record: Record, error: RowError) -> list[str]:
    """A rejected row as the rejected-rows CSV holds it: its fields, then where and what went wrong."""
    return [*record.fields, str(error.line), error.column, error.message]
