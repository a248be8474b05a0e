"""The `accounts` command: run the processes, migrate the database, and support staff's tools."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from accounts.cli_backoffice import customers_app, groups_app, notes_app, output_console
from accounts.settings import Settings

app = typer.Typer(help="Customer account lifecycles on Temporal.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
passwords_app = typer.Typer(help="Support: customers' passwords.", no_args_is_help=True)
app.add_typer(passwords_app, name="passwords")
staff_app = typer.Typer(help="Back-office staff.", no_args_is_help=True)
app.add_typer(staff_app, name="staff")
orders_app = typer.Typer(help="Order history from the shop's order system.", no_args_is_help=True)
app.add_typer(orders_app, name="orders")
app.add_typer(customers_app, name="customers")  # back office: accounts.cli_backoffice
app.add_typer(notes_app, name="notes")
app.add_typer(groups_app, name="groups")
Agent = Annotated[str, typer.Option(help="who acts (recorded in the audit trail)")]
console = output_console()
errors = output_console(stderr=True)
T = TypeVar("T")


def main() -> None:
    """Console entry point. Exits the process directly once the command has finished and flushed
    its output: native runtimes loaded by a command (Temporal's core, the database drivers) can still
    have threads running at interpreter shutdown, which aborted a finished `accounts status` in CI."""
    code = 0
    try:
        app()
    except SystemExit as exit_:
        if isinstance(exit_.code, str):  # SystemExit("why"): the interpreter would print it, os._exit does not
            errors.print(exit_.code, soft_wrap=True, markup=False, highlight=False)
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except Exception as error:
        missing = _missing_schema(error)
        if missing is None:
            raise
        errors.print(missing, soft_wrap=True, markup=False, highlight=False)
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


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


def echo_unwrapped(text: str) -> None:
    """A line as it is: never wrapped, cropped or styled (links must survive 80 columns and log files)."""
    console.print(text, soft_wrap=True, markup=False, highlight=False, emoji=False)


@app.command()
def dev() -> None:
    """Start the whole stack: Temporal dev server, SMTP sink, migrations, worker and API."""
    from devstack.dev import run_dev

    logging.basicConfig(level=logging.WARNING)
    asyncio.run(run_dev(Settings(), echo=echo_unwrapped))


@app.command()
def worker() -> None:
    """Run a Temporal worker for every lifecycle (same as `python worker.py`)."""
    import worker as worker_module

    asyncio.run(worker_module.main())


@app.command()
def api() -> None:
    """Serve the HTTP API on ACCOUNTS_API_HOST:ACCOUNTS_API_PORT."""
    import uvicorn

    from api.app import create_app

    settings = Settings()
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
    )


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply the database migrations."""
    from accounts.migrate import upgrade

    settings = Settings()
    upgrade(settings.database_url, revision)
    console.print(f"database at {revision}")


@app.command("jwt-key")
def jwt_key(path: Path) -> None:
    """Create the RS256 key that signs access tokens at PATH, unless it exists (idempotent)."""
    from accounts.access_tokens import SigningKey

    key = SigningKey.load_or_create(path)
    console.print(f"signing key {key.kid} at {path}")


def _with_client(action: Callable[[Any], Awaitable[T]]) -> T:
    return _with_client_and_sessions(lambda client, _sessions: action(client))


def _with_client_and_sessions(action: Callable[[Any, Any], Awaitable[T]]) -> T:
    from accounts.db import create_engine, session_factory
    from starter import AccountsClient

    async def run() -> T:
        settings = Settings()
        engine = create_engine(settings.database_url)
        try:
            sessions = session_factory(engine)
            return await action(await AccountsClient.connect(settings, sessions), sessions)
        finally:
            await engine.dispose()

    from starter import AccountsError

    try:
        return asyncio.run(run())
    except AccountsError as error:
        console.print(f"[red]{type(error).__name__}[/red]: {error}")
        raise typer.Exit(1) from None


@app.command()
def verify(
    customer_reference: str,
    agent: Annotated[str, typer.Option(help="who verifies (recorded in the audit trail)")],
    reason: Annotated[str, typer.Option(help="why, e.g. the ticket number")],
) -> None:
    """Support: activate an account without the email link."""
    activation = _with_client(lambda c: c.verify_manually(customer_reference, agent=agent, reason=reason))
    console.print(f"{activation.customer_reference} verified at {activation.registered_at:%Y-%m-%d %H:%M:%S %Z}")


@app.command()
def resend(customer_reference: str) -> None:
    """Support: send a fresh verification link (throttled like the customer's own resend)."""
    resent = _with_client(lambda c: c.resend_verification(customer_reference))
    console.print(f"verification email sent at {resent.sent_at:%H:%M:%S %Z}; {resent.resends_left} resends left")


@app.command()
def unlock(
    customer_reference: str,
    agent: Annotated[str, typer.Option(help="who unlocks (recorded in the audit trail)")],
    reason: Annotated[str, typer.Option(help="why")] = "support unlock",
) -> None:
    """Support: lift a sign-in lock before its timer runs out."""
    unlocked = _with_client(lambda c: c.logins.unlock(customer_reference, agent=agent, reason=reason))
    console.print(f"{customer_reference} unlocked (was locked until {unlocked.was_locked_until:%H:%M:%S %Z})")


@app.command()
def status(customer_reference: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Support: the registration's stage, deadlines, the customer's emails and the run in the Temporal UI."""
    from accounts.outbox import Deliveries, deliveries

    async def read(client: Any, sessions: Any) -> tuple[Any, Deliveries, str]:
        state = await client.registration_status(customer_reference)
        async with sessions() as session:
            mail = await deliveries(session, customer_reference)
        return state, mail, client.run_url(customer_reference)

    state, mail, url = _with_client_and_sessions(read)
    if as_json:
        typer.echo(json.dumps({**asdict(state), "emails": asdict(mail), "temporal_ui": url}, default=str, indent=2))
        return
    table = Table(show_header=False, title=f"Registration {customer_reference}")
    table.add_column("field", no_wrap=True)
    table.add_column("value", overflow="fold")  # never cut short
    for name, value in asdict(state).items():
        table.add_row(name.replace("_", " "), "-" if value is None else str(value))
    console.print(table)
    echo_unwrapped(mail.line())
    echo_unwrapped(f"Temporal UI: {url}")  # on its own line, whole: terminals make it clickable


@passwords_app.command("send-token")
def send_password_token(customer_reference: str, agent: Agent) -> None:
    """Email the customer a "set your password" link."""
    _with_client(lambda c: c.passwords.send_set_password_link(customer_reference, agent=agent))
    console.print(f"set-password link on its way to {customer_reference}")


@passwords_app.command("set")
def set_password(
    customer_reference: str,
    agent: Agent,
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)],
) -> None:
    """Set a password for the customer (policy enforced, sessions ended, customer notified)."""
    _with_client(lambda c: c.passwords.set_by_support(customer_reference, password, agent=agent))
    console.print(f"password of {customer_reference} set; the customer is notified")


@passwords_app.command("force-reset")
def force_reset(customer_reference: str, agent: Agent) -> None:
    """The current password stops working at once and a reset link is emailed."""
    _with_client(lambda c: c.passwords.force_reset(customer_reference, agent=agent))
    console.print(f"{customer_reference} must reset the password; the link is on its way")


@passwords_app.command("send-tokens")
def send_tokens(
    agent: Agent,
    without_password: Annotated[
        bool, typer.Option("--without-password", help="required: the customers to mail")
    ] = False,
) -> None:
    """Bulk: set-password links to every active customer without a password (resumable)."""
    from rich.progress import Progress

    if not without_password:
        raise typer.BadParameter("name the customers: --without-password")

    async def run(client: Any) -> tuple[int, int]:
        total = await client.passwords.count_customers_without_password()
        sent = skipped = 0
        with Progress(console=console) as progress:
            task = progress.add_task("sending set-password links", total=total)
            async for _reference, was_sent in client.passwords.send_links_to_customers_without_password(agent=agent):
                sent, skipped = (sent + 1, skipped) if was_sent else (sent, skipped + 1)
                progress.advance(task)
        return sent, skipped

    sent, skipped = _with_client(run)
    console.print(f"{sent} links sent, {skipped} skipped (a link was already on its way)")


PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="read the web UI password from the first line of stdin")
]


def _staff_directory_run(action: Callable[[Any], Awaitable[T]]) -> T:
    from accounts.db import create_engine, session_factory
    from accounts.passwords import PasswordHasher
    from accounts.staff import StaffDirectory

    async def run() -> T:
        settings = Settings()
        engine = create_engine(settings.database_url)
        try:
            return await action(StaffDirectory(session_factory(engine), PasswordHasher.from_settings(settings)))
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _read_password_stdin() -> str:
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise typer.BadParameter("no password on stdin")
    return password


@staff_app.command("create")
def staff_create(
    name: str,
    role: Annotated[str, typer.Option(help="admin or support")] = "support",
    password_stdin: PasswordStdin = False,
) -> None:
    """Create a staff member and print their API key (shown once, stored as an argon2 hash)."""
    from accounts.staff import StaffExists

    password = _read_password_stdin() if password_stdin else None
    try:
        member, key = _staff_directory_run(lambda directory: directory.create(name, role, password=password))
    except StaffExists as exists:
        console.print(
            f"[red]cannot create {escape(name)}[/red]: {escape(str(exists))}"
            f" (`accounts staff set-password {escape(name)}` sets their web password)"
        )
        raise typer.Exit(1) from None
    except ValueError as error:
        console.print(f"[red]cannot create {escape(name)}[/red]: {escape(str(error))}")
        raise typer.Exit(1) from None
    console.print(f"{member.name} ({member.role}) created. API key, shown this once:")
    typer.echo(key)


@staff_app.command("set-password")
def staff_set_password(name: str, password_stdin: PasswordStdin = False) -> None:
    """Set NAME's password for the back-office web UI (asked twice, hidden; signs out their web sessions)."""
    from accounts.staff import StaffNotFound, StaffPasswordRejected

    if password_stdin:
        password = _read_password_stdin()
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        member = _staff_directory_run(lambda directory: directory.set_password(name, password))
    except StaffNotFound:
        console.print(f"[red]no staff member named {escape(name)}[/red]")
        raise typer.Exit(1) from None
    except StaffPasswordRejected as rejected:
        console.print(f"[red]password refused[/red]: {rejected}")
        raise typer.Exit(1) from None
    console.print(f"web password of {member.name} ({member.role}) set")


@staff_app.command("list")
def staff_list(as_json: Annotated[bool, typer.Option("--json", help="print JSON for scripts")] = False) -> None:
    """Every staff member: role, created, disabled, whether they have a web password."""
    members = _staff_directory_run(lambda directory: directory.listing())
    if as_json:
        listed = [
            {
                "name": m.name,
                "role": m.role,
                "createdAt": m.created_at.isoformat(),
                "disabledAt": m.disabled_at.isoformat() if m.disabled_at else None,
                "webPassword": m.has_password,
            }
            for m in members
        ]
        typer.echo(json.dumps(listed, indent=2, ensure_ascii=False))
        return
    table = Table(title=f"Staff ({len(members)})")
    for column in ("name", "role", "created", "disabled", "web password"):
        table.add_column(column, overflow="fold")
    for m in members:
        disabled = f"{m.disabled_at:%Y-%m-%d %H:%M}" if m.disabled_at else "-"
        table.add_row(m.name, m.role, f"{m.created_at:%Y-%m-%d %H:%M}", disabled, "yes" if m.has_password else "no")
    console.print(table)


def _set_disabled(name: str, disabled: bool) -> None:
    from accounts.staff import StaffNotFound

    try:
        member, changed = _staff_directory_run(lambda directory: directory.set_disabled(name, disabled))
    except StaffNotFound:
        console.print(f"[red]no staff member named {escape(name)}[/red]")
        raise typer.Exit(1) from None
    if disabled:
        console.print(
            f"{member.name} {'disabled' if changed else 'was already disabled'}: the API key stops working within a"
            " minute (the API's key cache), web sessions at their next request"
        )
    else:
        console.print(f"{member.name} {'enabled' if changed else 'was not disabled'}")


@staff_app.command("disable")
def staff_disable(name: str) -> None:
    """Disable NAME: API key and web password stop working (the key within a minute); nothing is deleted."""
    _set_disabled(name, True)


@staff_app.command("enable")
def staff_enable(name: str) -> None:
    """Enable a disabled staff member again (same API key and web password as before)."""
    _set_disabled(name, False)


@orders_app.command("import")
def orders_import(file: Path) -> None:
    """Import orders from FILE (.json list of orders, or .csv with one row per item); upsert by orderReference."""
    from accounts.db import create_engine, session_factory
    from accounts.orders import ImportResult, import_orders, read_orders_file

    try:
        parsed = read_orders_file(file)
    except (OSError, ValueError) as error:
        console.print(f"[red]cannot read {file}[/red]: {error}")
        raise typer.Exit(1) from None

    async def run() -> ImportResult:
        engine = create_engine(Settings().database_url)
        try:
            return await import_orders(session_factory(engine), parsed.records)
        finally:
            await engine.dispose()

    result = asyncio.run(run())
    rejected = parsed.rejected + [(parsed.locations[index], reason) for index, reason in result.rejected]
    # plain lines, never wrapped: the shop's import job reads this output
    typer.echo(
        f"{result.created} created, {result.updated} updated, {result.unchanged} unchanged, {len(rejected)} rejected"
    )
    for location, reason in rejected:
        typer.echo(f"rejected {location}: {reason}")
    if rejected:
        raise typer.Exit(1)
