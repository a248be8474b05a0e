"""Running a back-office use case from the command line (for `cli.customers` and `cli.notes_groups`).

Each command is a `backoffice.BackOffice` use case, the same one the API and the web UI call.
Tables are printed with rich; `--json` prints the API's attribute shapes for scripts. The actor recorded
in the audit trail is `--agent`, by default `cli:<OS user>`. Whoever runs these holds the database
credentials, so the CLI acts with every role.
"""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from accounts.settings import Settings
from cli.output import errors

if TYPE_CHECKING:
    from accounts.staff import StaffMember
    from backoffice import BackOffice

T = TypeVar("T")

AgentOption = Annotated[
    str | None, typer.Option("--agent", help="who acts, recorded in the audit trail (default: cli:<OS user>)")
]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]
StatusOption = Annotated[str | None, typer.Option(help="verified, unverified, locked or anonymized")]
GroupOption = Annotated[str | None, typer.Option(help="only members of this group (its name)")]
SearchOption = Annotated[str | None, typer.Option(help="part of the email, a name or the reference")]
SortOption = Annotated[
    str, typer.Option(help="created_at, email, last_name, customer_reference, registered_at; '-' = descending")
]


def actor(agent: str | None) -> StaffMember:
    from backoffice import cli_staff

    return cli_staff(agent or f"cli:{getpass.getuser()}")


def with_office(action: Callable[[BackOffice], Awaitable[T]]) -> T:
    """Run a use case against the configured database and Temporal; refusals end the command with code 1."""
    from accounts.db import create_engine, session_factory
    from accounts.temporal import connect
    from backoffice import BackOffice, BackOfficeError
    from starter import AccountsClient, AccountsError

    async def run() -> T:
        settings = Settings()
        engine = create_engine(settings.database_url)
        try:
            # lazy: commands that only read or write the database work while Temporal is down
            client = await connect(settings, lazy=True)
            sessions = session_factory(engine)
            return await action(BackOffice(sessions, AccountsClient(client, settings, sessions), settings))
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except (BackOfficeError, AccountsError) as error:
        errors.print(f"[red]{type(error).__name__}[/red]: {error}", soft_wrap=True)  # one line, never wrapped
        raise typer.Exit(1) from None
