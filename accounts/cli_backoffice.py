"""Back-office commands for support staff: `accounts customers|notes|groups ...` (registered in accounts.cli).

Each command is a `backoffice.BackOffice` use case, the same one the API and the web UI call.
Tables are printed with rich; `--json` prints the API's attribute shapes for scripts. The actor recorded
in the audit trail is `--agent`, by default `cli:<OS user>`. Whoever runs these holds the database
credentials, so the CLI acts with every role.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from accounts.settings import Settings

if TYPE_CHECKING:
    from accounts.staff import StaffMember
    from backoffice import BackOffice

customers_app = typer.Typer(help="Back office: customers.", no_args_is_help=True)
notes_app = typer.Typer(help="Back office: notes on customers.", no_args_is_help=True)
groups_app = typer.Typer(help="Back office: customer groups.", no_args_is_help=True)


def output_console(*, stderr: bool = False) -> Console:
    """Rich lays tables out for 80 columns when the output is no terminal (a pipe, a log file); there it
    gets 200, so rows stay whole lines. A terminal keeps its width, and COLUMNS always wins."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or "COLUMNS" in os.environ else 200
    return Console(stderr=stderr, width=width)


console = output_console()
errors = output_console(stderr=True)
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


def _actor(agent: str | None) -> StaffMember:
    from backoffice import cli_staff

    return cli_staff(agent or f"cli:{getpass.getuser()}")


def _run(action: Callable[[BackOffice], Awaitable[T]]) -> T:
    """Run a use case against the configured database and Temporal; refusals end the command with code 1."""
    from temporalio.client import Client

    from accounts.db import create_engine, session_factory
    from accounts.temporal import data_converter
    from backoffice import BackOffice, BackOfficeError
    from starter import AccountsClient, AccountsError

    async def run() -> T:
        settings = Settings()
        engine = create_engine(settings.database_url)
        try:
            # lazy: commands that only read or write the database work while Temporal is down
            client = await Client.connect(
                settings.temporal_target,
                namespace=settings.temporal_namespace,
                data_converter=data_converter(settings),
                lazy=True,
            )
            sessions = session_factory(engine)
            return await action(BackOffice(sessions, AccountsClient(client, settings, sessions), settings))
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except (BackOfficeError, AccountsError) as error:
        errors.print(f"[red]{type(error).__name__}[/red]: {error}")
        raise typer.Exit(1) from None


def _echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, default=str, indent=2, ensure_ascii=False))


def _when(value: Any) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M}"


# --- customers -------------------------------------------------------------------------------------------


@customers_app.command("list")
def list_customers(
    status: StatusOption = None,
    group: GroupOption = None,
    search: SearchOption = None,
    sort: SortOption = "-created_at",
    page: Annotated[int, typer.Option(min=1)] = 1,
    per_page: Annotated[int, typer.Option(min=1, max=100)] = 20,
    as_json: JsonOption = False,
) -> None:
    """List customers: filter by status and group, search, sort and page."""
    from api.routes.backoffice import row_attributes
    from backoffice import CustomerFilter

    def build() -> CustomerFilter:
        return CustomerFilter(status=status, group=group, search=search, sort=sort, page=page, per_page=per_page)

    result = _run(lambda office: office.list_customers(build()))
    if as_json:
        _echo_json({"data": [row_attributes(row) for row in result.rows], "total": result.total, "page": page,
                    "perPage": per_page, "pages": result.pages})  # fmt: skip
        return
    table = Table(title=f"Customers (page {page} of {result.pages}, {result.total} in all)")
    longest = max((len(row.customer_reference) for row in result.rows), default=0)
    table.add_column("reference", no_wrap=True, min_width=longest)
    table.add_column("email", overflow="fold")  # values to copy are folded, never cut short with "…"
    for column in ("name", "status", "channel", "created", "registered", "groups"):
        table.add_column(column, overflow="fold")
    for row in result.rows:
        name = " ".join(part for part in (row.first_name, row.last_name) if part)
        table.add_row(row.customer_reference, row.email, name, row.status, row.channel, _when(row.created_at),
                      _when(row.registered_at), ", ".join(row.groups))  # fmt: skip
    console.print(table)


@customers_app.command("export")
def export_customers(
    file: Path,
    status: StatusOption = None,
    group: GroupOption = None,
    search: SearchOption = None,
    sort: SortOption = "-created_at",
) -> None:
    """Write every matching customer to FILE as CSV (header row; UTF-8)."""
    from backoffice import CustomerFilter

    text = _run(lambda office: office.export_csv(CustomerFilter(status=status, group=group, search=search, sort=sort)))
    file.write_text(text, encoding="utf-8", newline="")
    rows = max(0, len(text.splitlines()) - 1)
    console.print(f"{rows} customers written to {file}")


@customers_app.command("show")
def show_customer(customer_reference: str, as_json: JsonOption = False) -> None:
    """A customer: profile, addresses, orders, notes, groups and the live lifecycle from Temporal."""
    from api.routes.backoffice import detail_attributes

    detail = _run(lambda office: office.customer_detail(customer_reference))
    if detail is None:
        errors.print(f"[red]CustomerNotFound[/red]: no customer {customer_reference}")
        raise typer.Exit(1)
    attributes = detail_attributes(detail)
    if as_json:
        _echo_json(attributes)
        return
    profile = Table(show_header=False, title=f"Customer {customer_reference}")
    profile.add_column("field", no_wrap=True)
    profile.add_column("value", overflow="fold")
    for name in (
        "email",
        "salutation",
        "firstName",
        "lastName",
        "status",
        "lockedUntil",
        "channel",
        "locale",
        "phone",
        "company",
        "createdAt",
        "registeredAt",
        "anonymizedAt",
        "passwordSet",
        "ordersTotal",
    ):
        profile.add_row(name, "-" if attributes[name] is None else str(attributes[name]))  # fmt: skip
    profile.add_row("groups", ", ".join(group.name for group in detail.groups) or "-")
    console.print(profile)
    if detail.addresses:
        addresses = Table(title="Addresses")
        addresses.add_column("uuid", no_wrap=True, min_width=36, overflow="fold")  # copied into commands: whole
        addresses.add_column("address", overflow="fold")
        addresses.add_column("defaults", overflow="fold")
        for entry in detail.addresses:
            a = entry.address
            defaults = [
                k for k, v in (("billing", entry.is_default_billing), ("shipping", entry.is_default_shipping)) if v
            ]
            addresses.add_row(a.uuid, f"{a.address1} {a.address2}, {a.zip_code} {a.city} ({a.iso2_code})",
                              ", ".join(defaults))  # fmt: skip
        console.print(addresses)
    if detail.notes:
        notes = Table(title="Notes")
        for column in ("time", "author", "message"):
            notes.add_column(column, overflow="fold")
        for note in detail.notes:
            notes.add_row(_when(note.created_at), note.author, note.message)
        console.print(notes)
    runs = Table(title=f"Lifecycle (Temporal: {detail.lifecycle_status})")
    runs.add_column("workflow", overflow="fold")
    for column in ("status", "stage", "deadlines", "waits for"):
        runs.add_column(column, overflow="fold")
    for run in detail.lifecycle:
        deadlines = ", ".join(f"{name} {_when(at)}" for name, at in run.deadlines.items())
        runs.add_row(run.workflow_id, run.status, run.stage or "-", deadlines, ", ".join(run.pending_actions))
    console.print(runs)
    # the runs' links below the table, one per line and never wrapped: a table cell would cut them
    for run in detail.lifecycle:
        console.print(f"{run.workflow_id}: {run.ui_url}", soft_wrap=True, markup=False, highlight=False)


@customers_app.command("create")
def create_customer(
    email: str,
    first_name: Annotated[str, typer.Option()],
    last_name: Annotated[str, typer.Option()],
    salutation: Annotated[str | None, typer.Option(help="Mr, Mrs, Ms or Dr")] = None,
    gender: Annotated[str | None, typer.Option(help="Male or Female")] = None,
    date_of_birth: Annotated[str | None, typer.Option(help="YYYY-MM-DD")] = None,
    phone: Annotated[str | None, typer.Option()] = None,
    company: Annotated[str | None, typer.Option()] = None,
    locale: Annotated[str | None, typer.Option(help="e.g. de_DE (default: the shop's)")] = None,
    send_password_token: Annotated[bool, typer.Option(help='also email a "set your password" link')] = False,
    agent: AgentOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a customer without a password (channel backoffice); the verification email goes out."""
    from backoffice import CustomerDraft

    draft = CustomerDraft(email=email, first_name=first_name, last_name=last_name, salutation=salutation,
                          gender=gender, date_of_birth=_date(date_of_birth), phone=phone, company=company,
                          locale=locale)  # fmt: skip
    created = _run(lambda office: office.create_customer(draft, _actor(agent), send_password_token=send_password_token))
    if as_json:
        _echo_json({"customerReference": created.customer_reference, "createdAt": created.created_at.isoformat(),
                    "workflowId": created.workflow_id, "passwordTokenSent": created.password_token_sent})  # fmt: skip
        return
    extra = " and a set-password link" if created.password_token_sent else ""
    console.print(f"{created.customer_reference} created; verification email{extra} on its way")


def _date(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from None


@customers_app.command("edit")
def edit_customer(
    customer_reference: str,
    first_name: Annotated[str | None, typer.Option()] = None,
    last_name: Annotated[str | None, typer.Option()] = None,
    salutation: Annotated[str | None, typer.Option()] = None,
    gender: Annotated[str | None, typer.Option()] = None,
    date_of_birth: Annotated[str | None, typer.Option(help="YYYY-MM-DD")] = None,
    phone: Annotated[str | None, typer.Option(help='"" removes it')] = None,
    company: Annotated[str | None, typer.Option(help='"" removes it')] = None,
    locale: Annotated[str | None, typer.Option()] = None,
    agent: AgentOption = None,
    as_json: JsonOption = False,
) -> None:
    """Edit a customer's profile; options left out stay as they are."""
    edits: dict[str, Any] = {
        name: value
        for name, value in {"first_name": first_name, "last_name": last_name, "salutation": salutation,
                            "gender": gender, "phone": phone, "company": company, "locale": locale}.items()
        if value is not None
    }  # fmt: skip
    if date_of_birth is not None:
        edits["date_of_birth"] = _date(date_of_birth)
    if not edits:
        raise typer.BadParameter("name at least one field to change")
    edit = _run(lambda office: office.edit_profile(customer_reference, edits, _actor(agent)))
    changed = sorted(edit.changed)  # what really changed, as the audit event says; not every option given
    if as_json:
        _echo_json({"customerReference": edit.customer.customer_reference, "changed": changed})
        return
    if changed:
        console.print(f"{edit.customer.customer_reference} updated: {', '.join(changed)}")
    else:
        console.print(f"{edit.customer.customer_reference} unchanged: every field already had that value")


@customers_app.command("add-address")
def add_address(
    customer_reference: str,
    first_name: Annotated[str, typer.Option()],
    last_name: Annotated[str, typer.Option()],
    address1: Annotated[str, typer.Option(help="street")],
    address2: Annotated[str, typer.Option(help="house number")],
    zip_code: Annotated[str, typer.Option()],
    city: Annotated[str, typer.Option()],
    iso2_code: Annotated[str, typer.Option(help="country, e.g. DE")],
    salutation: Annotated[str, typer.Option()] = "Mr",
    address3: Annotated[str | None, typer.Option()] = None,
    company: Annotated[str | None, typer.Option()] = None,
    phone: Annotated[str | None, typer.Option()] = None,
    default_billing: Annotated[bool, typer.Option()] = False,
    default_shipping: Annotated[bool, typer.Option()] = False,
    agent: AgentOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add an address (checked like the API's; the first becomes both defaults)."""
    from pydantic import ValidationError

    from api.routes.addresses import FLAGS, address_attributes
    from api.schemas import AddressAttributes

    try:
        checked = AddressAttributes.model_validate(
            {"salutation": salutation, "firstName": first_name, "lastName": last_name, "address1": address1,
             "address2": address2, "address3": address3, "zipCode": zip_code, "city": city, "iso2Code": iso2_code,
             "company": company, "phone": phone}
        )  # fmt: skip
    except ValidationError as error:
        raise typer.BadParameter("; ".join(f"{e['loc'][-1]}: {e['msg']}" for e in error.errors())) from None
    entry = _run(lambda office: office.add_address(customer_reference, checked.model_dump(exclude=FLAGS),
                                                   _actor(agent), default_billing=default_billing,
                                                   default_shipping=default_shipping))  # fmt: skip
    if as_json:
        _echo_json({"uuid": entry.address.uuid, **address_attributes(entry)})
        return
    console.print(f"address {entry.address.uuid} added to {customer_reference}")


@customers_app.command("default-address")
def default_address(
    customer_reference: str,
    address_uuid: str,
    billing: Annotated[bool, typer.Option("--billing", help="make it the default billing address")] = False,
    shipping: Annotated[bool, typer.Option("--shipping", help="make it the default shipping address")] = False,
    agent: AgentOption = None,
) -> None:
    """Make an address the customer's default billing and/or shipping address."""
    if not (billing or shipping):
        raise typer.BadParameter("name --billing and/or --shipping")
    _run(lambda office: office.update_address(customer_reference, address_uuid, _actor(agent),
                                              default_billing=billing, default_shipping=shipping))  # fmt: skip
    console.print(f"{address_uuid} is now {customer_reference}'s default " + " and ".join(
        kind for kind, chosen in (("billing", billing), ("shipping", shipping)) if chosen))  # fmt: skip


@customers_app.command("delete")
def delete_customer(
    customer_reference: str,
    agent: AgentOption = None,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask")] = False,
) -> None:
    """Delete (anonymize) a customer: personal data, addresses, notes and group memberships go."""
    if not yes:
        typer.confirm(f"Anonymize {customer_reference}? This cannot be undone", abort=True)
    _run(lambda office: office.delete_customer(customer_reference, _actor(agent)))
    console.print(f"{customer_reference} anonymized")


@customers_app.command("events")
def customer_events(customer_reference: str, as_json: JsonOption = False) -> None:
    """The customer's audit trail, newest first."""
    events = _run(lambda office: office.events(customer_reference))
    if as_json:
        _echo_json([{"event": e.event, "channel": e.channel, "actor": e.actor, "occurredAt": e.occurred_at.isoformat(),
                     "details": e.details} for e in events])  # fmt: skip
        return
    table = Table(title=f"Events of {customer_reference}, newest first")
    for column in ("time", "event", "channel", "actor", "details"):
        table.add_column(column, overflow="fold")
    for e in events:
        table.add_row(f"{e.occurred_at:%Y-%m-%d %H:%M:%S}", e.event, e.channel, e.actor,
                      json.dumps(e.details) if e.details else "")  # fmt: skip
    console.print(table)


# --- notes -----------------------------------------------------------------------------------------------


@notes_app.command("add")
def add_note(customer_reference: str, message: str, agent: AgentOption = None, as_json: JsonOption = False) -> None:
    """Add a note to a customer (author: --agent)."""
    from api.routes.backoffice import note_attributes

    note = _run(lambda office: office.add_note(customer_reference, _actor(agent), message))
    if as_json:
        _echo_json(note_attributes(note))
        return
    console.print(f"note {note.id} added to {customer_reference}")


@notes_app.command("list")
def list_notes(customer_reference: str, as_json: JsonOption = False) -> None:
    """A customer's notes, newest first."""
    from api.routes.backoffice import note_attributes

    notes = _run(lambda office: office.notes(customer_reference))
    if as_json:
        _echo_json([note_attributes(note) for note in notes])
        return
    table = Table(title=f"Notes on {customer_reference}")
    for column in ("time", "author", "message"):
        table.add_column(column, overflow="fold")
    for note in notes:
        table.add_row(_when(note.created_at), note.author, note.message)
    console.print(table)


# --- groups ----------------------------------------------------------------------------------------------


@groups_app.command("list")
def list_groups(as_json: JsonOption = False) -> None:
    """Customer groups with their member counts."""
    from api.routes.backoffice import group_attributes

    groups = _run(lambda office: office.list_groups())
    if as_json:
        _echo_json([group_attributes(group) for group in groups])
        return
    table = Table(title="Customer groups")
    for column in ("id", "name", "description", "members"):
        table.add_column(column, overflow="fold")
    for group in groups:
        table.add_row(str(group.id), group.name, group.description or "", str(group.members))
    console.print(table)


@groups_app.command("create")
def create_group(
    name: str,
    description: Annotated[str | None, typer.Option(help="up to 255 characters")] = None,
    agent: AgentOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a customer group (name unique, up to 70 characters)."""
    from api.routes.backoffice import group_attributes

    group = _run(lambda office: office.create_group(name, description, _actor(agent)))
    if as_json:
        _echo_json(group_attributes(group))
        return
    console.print(f"group {group.name} created (id {group.id})")


@groups_app.command("rename")
def rename_group(group: str, new_name: str, agent: AgentOption = None) -> None:
    """Rename a group (GROUP: its name or id)."""
    renamed = _run(lambda office: office.update_group(group, _actor(agent), new_name=new_name))
    console.print(f"group {renamed.id} is now {renamed.name}")


@groups_app.command("describe")
def describe_group(group: str, description: str, agent: AgentOption = None) -> None:
    """Set a group's description ("" removes it)."""
    described = _run(
        lambda office: office.update_group(
            group, _actor(agent), description=description or None, clear_description=not description
        )
    )
    console.print(f"group {described.name} described")


@groups_app.command("delete")
def delete_group(group: str, agent: AgentOption = None) -> None:
    """Delete a group; its members stay customers."""
    _run(lambda office: office.delete_group(group, _actor(agent)))
    console.print(f"group {group} deleted")


@groups_app.command("assign")
def assign(group: str, customer_reference: str, agent: AgentOption = None) -> None:
    """Put a customer into a group."""
    added = _run(lambda office: office.assign(customer_reference, group, _actor(agent)))
    console.print(f"{customer_reference} {'added to' if added else 'was already in'} {group}")


@groups_app.command("unassign")
def unassign(group: str, customer_reference: str, agent: AgentOption = None) -> None:
    """Take a customer out of a group."""
    removed = _run(lambda office: office.unassign(customer_reference, group, _actor(agent)))
    console.print(f"{customer_reference} {'removed from' if removed else 'was not in'} {group}")
