"""The `accounts` command: run the processes, migrate the database, and support staff's tools.

One module per command group: `system` (dev, worker, api, db upgrade, jwt-key), `lifecycle` (status,
verify, resend, unlock, passwords), `staff`, `orders`, and the back office's `customers` and
`notes_groups` (both run their use cases through `office`), `imports` (customer.csv); `output` is how they print.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from accounts.settings import Settings
from cli import customers, imports, lifecycle, notes_groups, orders, staff, system
from cli.output import errors

app = typer.Typer(help="Customer account lifecycles on Temporal.", no_args_is_help=True)
app.add_typer(system.app)  # dev, worker, api, jwt-key
app.add_typer(system.db_app, name="db")
app.add_typer(lifecycle.app)  # status, verify, resend, unlock
app.add_typer(lifecycle.passwords_app, name="passwords")
app.add_typer(staff.app, name="staff")
app.add_typer(orders.app, name="orders")
app.add_typer(customers.app, name="customers")
app.add_typer(notes_groups.notes_app, name="notes")
app.add_typer(notes_groups.groups_app, name="groups")
app.add_typer(imports.app, name="import")


def main() -> None:
    """Console entry point. Exits the process directly once the command has finished and flushed
    its output: native runtimes loaded by a command (Temporal's core, the database drivers) can still
    have threads running at interpreter shutdown, which aborted a finished `accounts status` in CI."""
    code = 0
    try:
        app(prog_name="accounts")  # also under `python -m cli`
    except SystemExit as exit_:
        if isinstance(exit_.code, str):  # SystemExit("why"): the interpreter would print it, os._exit does not
            errors.print(exit_.code, soft_wrap=True, markup=False, highlight=False)
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except Exception as error:
        missing = _configuration_error(error) or _missing_schema(error) or _foreign_payload(error)
        if missing is None:
            raise
        errors.print(missing, soft_wrap=True, markup=False, highlight=False)
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def _configuration_error(error: Exception) -> str | None:
    """One line instead of a traceback when the settings are refused (production without its keys, say)
    or name an unusable file: the line names the setting."""
    from pydantic import ValidationError

    from accounts.settings import ConfigurationError

    if isinstance(error, ConfigurationError):
        return str(error)
    if isinstance(error, ValidationError) and error.title == Settings.__name__:
        parts = []
        for item in error.errors():
            message = str(item["msg"]).removeprefix("Value error, ")
            where = "_".join(str(part) for part in item["loc"]).upper()
            parts.append(f"ACCOUNTS_{where}: {message}" if where else message)
        return "invalid settings: " + "; ".join(parts)
    return None


def _foreign_payload(error: BaseException) -> str | None:
    """One line instead of a traceback when Temporal hands back a payload this process cannot decrypt: the
    key it names is not configured here, or ACCOUNTS_TEMPORAL_ADDRESS names another stack's Temporal."""
    from accounts.temporal import UnknownPayloadKey

    seen: BaseException | None = error
    while seen is not None and not isinstance(seen, UnknownPayloadKey):
        seen = seen.__cause__ or seen.__context__
    if seen is None:
        return None
    return (
        f"{seen}: is ACCOUNTS_TEMPORAL_ADDRESS this stack's Temporal (another stack's runs are sealed with its"
        " own key), and does ACCOUNTS_PAYLOAD_DECRYPTION_KEYS list every key still in use?"
    )


def _missing_schema(error: Exception) -> str | None:
    """One line instead of a traceback when the configured database has no tables: typically the CLI
    run outside the project directory, where the default relative SQLite path names a new, empty file."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError

    if not isinstance(error, DBAPIError):
        return None
    cause = str(error.orig)
    if "no such table" not in cause and type(error.orig).__name__ != "UndefinedTableError":
        return None
    url = make_url(Settings().database_url)
    where = (
        str(Path(url.database).resolve())
        if url.get_backend_name() == "sqlite" and url.database
        else url.render_as_string(hide_password=True)
    )
    return (
        f"no accounts database at {where}: run `accounts db upgrade` (or `accounts dev`), run the command in the"
        " project directory, or set ACCOUNTS_DATABASE_URL to the database (an absolute path for SQLite)"
    )
