"""Back-office staff: `accounts staff create|new-key|set-password|set-email|list|disable|enable|mfa-enroll|mfa-remove`.

Errors go to stderr with exit code 1, so `KEY=$(accounts staff create ...)` never captures one."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from accounts.settings import Settings
from cli.output import console, errors

app = typer.Typer(help="Back-office staff.", no_args_is_help=True)
T = TypeVar("T")


PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="read the web UI password from the first line of stdin")
]


def _staff_directory_run(action: Callable[[Any], Awaitable[T]]) -> T:
    from accounts.db import create_engine, session_factory
    from accounts.staff import StaffDirectory

    async def run() -> T:
        settings = Settings()
        engine = create_engine(settings.database_url)
        try:
            return await action(StaffDirectory.from_settings(session_factory(engine), settings))
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _read_password_stdin() -> str:
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise typer.BadParameter("no password on stdin")
    return password


@app.command("create")
def staff_create(
    name: str,
    role: Annotated[str, typer.Option(help="admin, support or agent (assists customers in the shop)")] = "support",
    password_stdin: PasswordStdin = False,
    email: Annotated[str | None, typer.Option(help="where the lock email of this name goes")] = None,
) -> None:
    """Create a staff member and print their API key (shown once, stored as a keyed hash; new-key makes another)."""
    from accounts.staff import StaffExists

    password = _read_password_stdin() if password_stdin else None
    try:
        member, key = _staff_directory_run(
            lambda directory: directory.create(name, role, password=password, email=email)
        )
    except StaffExists as exists:
        errors.print(
            f"[red]cannot create {escape(name)}[/red]: {escape(str(exists))}"
            f" (lost their key? `accounts staff new-key {escape(name)}`; a web password:"
            f" `accounts staff set-password {escape(name)}`)"
        )
        raise typer.Exit(1) from None
    except ValueError as error:
        errors.print(f"[red]cannot create {escape(name)}[/red]: {escape(str(error))}")
        raise typer.Exit(1) from None
    console.print(f"{member.name} ({member.role}) created. API key, shown this once:")
    typer.echo(key)


@app.command("new-key")
def staff_new_key(name: str) -> None:
    """Give NAME a new API key and print it (shown once); the old key stops working (elsewhere within a minute)."""
    from accounts.staff import StaffNotFound

    try:
        member, key = _staff_directory_run(lambda directory: directory.new_key(name))
    except StaffNotFound:
        errors.print(f"[red]no staff member named {escape(name)}[/red]")
        raise typer.Exit(1) from None
    console.print(
        f"new API key of {member.name} ({member.role}), shown this once; the old one stops working within a minute:"
    )
    typer.echo(key)


@app.command("set-password")
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
        errors.print(f"[red]no staff member named {escape(name)}[/red]")
        raise typer.Exit(1) from None
    except StaffPasswordRejected as rejected:
        errors.print(f"[red]password refused[/red]: {rejected}")
        raise typer.Exit(1) from None
    console.print(f"web password of {member.name} ({member.role}) set")


@app.command("set-email")
def staff_set_email(
    name: str,
    email: Annotated[str | None, typer.Argument(help="the address; omit it with --clear")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="remove the address: no lock email any more")] = False,
) -> None:
    """Set where NAME's lock email goes (a lock of their name mails a one-time sign-in link), or --clear it."""
    from accounts.staff import StaffNotFound

    if (email is not None) == clear:  # exactly one of the two
        raise typer.BadParameter("give either an EMAIL or --clear")
    try:
        member = _staff_directory_run(lambda directory: directory.set_email(name, email))
    except StaffNotFound:
        errors.print(f"[red]no staff member named {escape(name)}[/red]")
        raise typer.Exit(1) from None
    except ValueError as error:
        errors.print(f"[red]email refused[/red]: {escape(str(error))}")
        raise typer.Exit(1) from None
    console.print(f"email of {member.name} ({member.role}) {'cleared' if clear else 'set'}")


@app.command("list")
def staff_list(as_json: Annotated[bool, typer.Option("--json", help="print JSON for scripts")] = False) -> None:
    """Every staff member: role, email, created, disabled, whether they have a web password."""
    members = _staff_directory_run(lambda directory: directory.listing())
    if as_json:
        listed = [
            {
                "name": m.name,
                "role": m.role,
                "email": m.email,
                "createdAt": m.created_at.isoformat(),
                "disabledAt": m.disabled_at.isoformat() if m.disabled_at else None,
                "webPassword": m.has_password,
            }
            for m in members
        ]
        typer.echo(json.dumps(listed, indent=2, ensure_ascii=False))
        return
    table = Table(title=f"Staff ({len(members)})")
    for column in ("name", "role", "email", "created", "disabled", "web password"):
        table.add_column(column, overflow="fold")
    for m in members:
        disabled = f"{m.disabled_at:%Y-%m-%d %H:%M}" if m.disabled_at else "-"
        created = f"{m.created_at:%Y-%m-%d %H:%M}"
        table.add_row(m.name, m.role, m.email or "-", created, disabled, "yes" if m.has_password else "no")
    console.print(table)


def _set_disabled(name: str, disabled: bool) -> None:
    from accounts.staff import StaffNotFound

    try:
        member, changed = _staff_directory_run(lambda directory: directory.set_disabled(name, disabled))
    except StaffNotFound:
        errors.print(f"[red]no staff member named {escape(name)}[/red]")
        raise typer.Exit(1) from None
    if disabled:
        console.print(
            f"{member.name} {'disabled' if changed else 'was already disabled'}: the API key stops working within a"
            " minute (the API's key cache), web sessions at their next request"
        )
    else:
        console.print(f"{member.name} {'enabled' if changed else 'was not disabled'}")


@app.command("disable")
def staff_disable(name: str) -> None:
    """Disable NAME: API key and web password stop working (the key within a minute); nothing is deleted."""
    _set_disabled(name, True)


@app.command("enable")
def staff_enable(name: str) -> None:
    """Enable a disabled staff member again (same API key and web password as before)."""
    _set_disabled(name, False)


def _staff_mfa_run(name: str, enrol: bool) -> tuple[str, Any]:
    """(the member's name, the enrolment or whether one was removed); StaffNotFound for an unknown name."""
    from sqlalchemy import select

    from accounts import mfa_staff
    from accounts.db import create_engine, session_factory
    from accounts.mfa import MfaPolicy
    from accounts.models import Staff
    from accounts.staff import StaffNotFound

    async def run() -> tuple[str, Any]:
        settings = Settings()
        engine = create_engine(settings.database_url)
        try:
            sessions = session_factory(engine)
            async with sessions() as session:
                member = await session.scalar(select(Staff).where(Staff.name == name))
            if member is None:
                raise StaffNotFound(name)
            if enrol:
                return member.name, await mfa_staff.enrol(sessions, MfaPolicy.from_settings(settings), member.id, name)
            return member.name, await mfa_staff.remove(sessions, member.id)
        finally:
            await engine.dispose()

    return asyncio.run(run())


@app.command("mfa-enroll")
def staff_mfa_enroll(name: str) -> None:
    """Give NAME an authenticator app (TOTP) for the web UI's sign-in; prints its secret and QR code once.

    ACCOUNTS_STAFF_MFA_REQUIRED=true makes the sign-in ask for its code. Enrolling again replaces the secret."""
    import segno

    from accounts.staff import StaffNotFound

    try:
        member, enrolment = _staff_mfa_run(name, True)
    except StaffNotFound:
        errors.print(f"[red]no staff member named {escape(name)}[/red]")
        raise typer.Exit(1) from None
    typer.echo(f"authenticator app of {member}: scan the code below, or type the secret {enrolment.secret}")
    typer.echo(enrolment.uri)
    segno.make(enrolment.uri, error="m").terminal(compact=True)


@app.command("mfa-remove")
def staff_mfa_remove(name: str) -> None:
    """Remove NAME's authenticator app (a lost phone); enrol them again before they can sign in with MFA on."""
    from accounts.staff import StaffNotFound

    try:
        member, removed = _staff_mfa_run(name, False)
    except StaffNotFound:
        errors.print(f"[red]no staff member named {escape(name)}[/red]")
        raise typer.Exit(1) from None
    console.print(f"authenticator app of {member} {'removed' if removed else 'was not enrolled'}")
