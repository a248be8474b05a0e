"""Back office: `accounts customers list|export|show|create|edit|add-address|default-address|delete|events`."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.office import AgentOption, GroupOption, JsonOption, SearchOption, SortOption, StatusOption, actor, with_office
from cli.output import console, echo_json, errors, when

app = typer.Typer(help="Back office: customers.", no_args_is_help=True)


@app.command("list")
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

    result = with_office(lambda office: office.list_customers(build()))
    if as_json:
        echo_json({"data": [row_attributes(row) for row in result.rows], "total": result.total, "page": page,
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
        table.add_row(row.customer_reference, row.email, name, row.status, row.channel, when(row.created_at),
                      when(row.registered_at), ", ".join(row.groups))  # fmt: skip
    console.print(table)


@app.command("export")
def export_customers(
    file: Path,
    status: StatusOption = None,
    group: GroupOption = None,
    search: SearchOption = None,
    sort: SortOption = "-created_at",
) -> None:
    """Write every matching customer to FILE as CSV (header row; UTF-8)."""
    from backoffice import CustomerFilter

    text = with_office(
        lambda office: office.export_csv(CustomerFilter(status=status, group=group, search=search, sort=sort))
    )
    file.write_text(text, encoding="utf-8", newline="")
    rows = max(0, len(text.splitlines()) - 1)
    console.print(f"{rows} customers written to {file}")


@app.command("show")
def show_customer(customer_reference: str, as_json: JsonOption = False) -> None:
    """A customer: profile, addresses, orders, notes, groups and the live lifecycle from Temporal."""
    from api.routes.backoffice import detail_attributes

    detail = with_office(lambda office: office.customer_detail(customer_reference))
    if detail is None:
        errors.print(f"[red]CustomerNotFound[/red]: no customer {customer_reference}")
        raise typer.Exit(1)
    attributes = detail_attributes(detail)
    if as_json:
        echo_json(attributes)
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
    standing = attributes["inactivity"]
    if standing is not None:
        due = [f"{name} {standing[name]}" for name in ("warningDue", "retirementDue") if standing[name]]
        profile.add_row("inactivity", " ".join([standing["stage"], f"since {standing['since'] or '-'}", *due]))
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
            notes.add_row(when(note.created_at), note.author, note.message)
        console.print(notes)
    runs = Table(title=f"Lifecycle (Temporal: {detail.lifecycle_status})")
    runs.add_column("workflow", overflow="fold")
    for column in ("status", "stage", "deadlines", "waits for"):
        runs.add_column(column, overflow="fold")
    for run in detail.lifecycle:
        deadlines = ", ".join(f"{name} {when(at)}" for name, at in run.deadlines.items())
        runs.add_row(run.workflow_id, run.status, run.stage or "-", deadlines, ", ".join(run.pending_actions))
    console.print(runs)
    # the runs' links below the table, one per line and never wrapped: a table cell would cut them
    for run in detail.lifecycle:
        console.print(f"{run.workflow_id}: {run.ui_url}", soft_wrap=True, markup=False, highlight=False)


@app.command("create")
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
    created = with_office(
        lambda office: office.create_customer(draft, actor(agent), send_password_token=send_password_token)
    )
    if as_json:
        echo_json({"customerReference": created.customer_reference, "createdAt": created.created_at.isoformat(),
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


@app.command("edit")
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
    edit = with_office(lambda office: office.edit_profile(customer_reference, edits, actor(agent)))
    changed = sorted(edit.changed)  # what really changed, as the audit event says; not every option given
    if as_json:
        echo_json({"customerReference": edit.customer.customer_reference, "changed": changed})
        return
    if changed:
        console.print(f"{edit.customer.customer_reference} updated: {', '.join(changed)}")
    else:
        console.print(f"{edit.customer.customer_reference} unchanged: every field already had that value")


@app.command("add-address")
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
    entry = with_office(lambda office: office.add_address(customer_reference, checked.model_dump(exclude=FLAGS),
                                                   actor(agent), default_billing=default_billing,
                                                   default_shipping=default_shipping))  # fmt: skip
    if as_json:
        echo_json({"uuid": entry.address.uuid, **address_attributes(entry)})
        return
    console.print(f"address {entry.address.uuid} added to {customer_reference}")


@app.command("default-address")
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
    with_office(lambda office: office.update_address(customer_reference, address_uuid, actor(agent),
                                              default_billing=billing, default_shipping=shipping))  # fmt: skip
    console.print(f"{address_uuid} is now {customer_reference}'s default " + " and ".join(
        kind for kind, chosen in (("billing", billing), ("shipping", shipping)) if chosen))  # fmt: skip


@app.command("delete")
def delete_customer(
    customer_reference: str,
    agent: AgentOption = None,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask")] = False,
) -> None:
    """Delete (anonymize) a customer: personal data, addresses, notes and group memberships go."""
    if not yes:
        typer.confirm(f"Anonymize {customer_reference}? This cannot be undone", abort=True)
    with_office(lambda office: office.delete_customer(customer_reference, actor(agent)))
    console.print(f"{customer_reference} anonymized")


@app.command("events")
def customer_events(customer_reference: str, as_json: JsonOption = False) -> None:
    """The customer's audit trail, newest first."""
    events = with_office(lambda office: office.events(customer_reference))
    if as_json:
        echo_json([{"event": e.event, "channel": e.channel, "actor": e.actor, "occurredAt": e.occurred_at.isoformat(),
                     "details": e.details} for e in events])  # fmt: skip
        return
    table = Table(title=f"Events of {customer_reference}, newest first")
    for column in ("time", "event", "channel", "actor", "details"):
        table.add_column(column, overflow="fold")
    for e in events:
        table.add_row(f"{e.occurred_at:%Y-%m-%d %H:%M:%S}", e.event, e.channel, e.actor,
                      json.dumps(e.details) if e.details else "")  # fmt: skip
    console.print(table)


@app.command("exempt-inactivity")
def exempt_inactivity(
    customer_reference: str,
    reason: Annotated[str, typer.Option(help="why (recorded in the audit trail)")],
    agent: AgentOption = None,
) -> None:
    """Support: never remind nor retire the customer for inactivity; a running inactivity lifecycle ends."""
    if not reason.strip():
        raise typer.BadParameter("give a reason")
    with_office(lambda office: office.exempt_from_inactivity(customer_reference, actor(agent), reason.strip()))
    console.print(f"{customer_reference} is exempt from the inactivity lifecycle")
