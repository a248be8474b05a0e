"""Support on a customer's lifecycles: `accounts status|verify|resend|unlock` and `accounts passwords ...`,
each a `starter.AccountsClient` call.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from accounts.settings import Settings
from cli.output import console, echo_unwrapped

app = typer.Typer()
passwords_app = typer.Typer(help="Support: customers' passwords.", no_args_is_help=True)
Agent = Annotated[str, typer.Option(help="who acts (recorded in the audit trail)")]
T = TypeVar("T")


def with_client(action: Callable[[Any], Awaitable[T]]) -> T:
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
    activation = with_client(lambda c: c.verify_manually(customer_reference, agent=agent, reason=reason))
    console.print(f"{activation.customer_reference} verified at {activation.registered_at:%Y-%m-%d %H:%M:%S %Z}")


@app.command()
def resend(customer_reference: str) -> None:
    """Support: send a fresh verification link (throttled like the customer's own resend)."""
    resent = with_client(lambda c: c.resend_verification(customer_reference))
    console.print(f"verification email sent at {resent.sent_at:%H:%M:%S %Z}; {resent.resends_left} resends left")


@app.command()
def unlock(
    customer_reference: str,
    agent: Annotated[str, typer.Option(help="who unlocks (recorded in the audit trail)")],
    reason: Annotated[str, typer.Option(help="why")] = "support unlock",
) -> None:
    """Support: lift a sign-in lock before its timer runs out."""
    unlocked = with_client(lambda c: c.logins.unlock(customer_reference, agent=agent, reason=reason))
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
    with_client(lambda c: c.passwords.send_set_password_link(customer_reference, agent=agent))
    console.print(f"set-password link on its way to {customer_reference}")


@passwords_app.command("set")
def set_password(
    customer_reference: str,
    agent: Agent,
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)],
) -> None:
    """Set a password for the customer (policy enforced, sessions ended, customer notified)."""
    with_client(lambda c: c.passwords.set_by_support(customer_reference, password, agent=agent))
    console.print(f"password of {customer_reference} set; the customer is notified")


@passwords_app.command("force-reset")
def force_reset(customer_reference: str, agent: Agent) -> None:
    """The current password stops working at once and a reset link is emailed."""
    with_client(lambda c: c.passwords.force_reset(customer_reference, agent=agent))
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

    sent, skipped = with_client(run)
    console.print(f"{sent} links sent, {skipped} skipped (a link was already on its way)")
