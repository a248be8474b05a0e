"""Back office: `accounts notes add|list` and `accounts groups list|create|rename|describe|delete|assign|unassign`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from cli.office import AgentOption, JsonOption, actor, with_office
from cli.output import console, echo_json, when

notes_app = typer.Typer(help="Back office: notes on customers.", no_args_is_help=True)
groups_app = typer.Typer(help="Back office: customer groups.", no_args_is_help=True)


# --- notes -----------------------------------------------------------------------------------------------


@notes_app.command("add")
def add_note(customer_reference: str, message: str, agent: AgentOption = None, as_json: JsonOption = False) -> None:
    """Add a note to a customer (author: --agent)."""
    from api.routes.backoffice import note_attributes

    note = with_office(lambda office: office.add_note(customer_reference, actor(agent), message))
    if as_json:
        echo_json(note_attributes(note))
        return
    console.print(f"note {note.id} added to {customer_reference}")


@notes_app.command("list")
def list_notes(customer_reference: str, as_json: JsonOption = False) -> None:
    """A customer's notes, newest first."""
    from api.routes.backoffice import note_attributes

    notes = with_office(lambda office: office.notes(customer_reference))
    if as_json:
        echo_json([note_attributes(note) for note in notes])
        return
    table = Table(title=f"Notes on {customer_reference}")
    for column in ("time", "author", "message"):
        table.add_column(column, overflow="fold")
    for note in notes:
        table.add_row(when(note.created_at), note.author, note.message)
    console.print(table)


# --- groups ----------------------------------------------------------------------------------------------


@groups_app.command("list")
def list_groups(as_json: JsonOption = False) -> None:
    """Customer groups with their member counts."""
    from api.routes.backoffice import group_attributes

    groups = with_office(lambda office: office.list_groups())
    if as_json:
        echo_json([group_attributes(group) for group in groups])
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

    group = with_office(lambda office: office.create_group(name, description, actor(agent)))
    if as_json:
        echo_json(group_attributes(group))
        return
    console.print(f"group {group.name} created (id {group.id})")


@groups_app.command("rename")
def rename_group(group: str, new_name: str, agent: AgentOption = None) -> None:
    """Rename a group (GROUP: its name or id)."""
    renamed = with_office(lambda office: office.update_group(group, actor(agent), new_name=new_name))
    console.print(f"group {renamed.id} is now {renamed.name}")


@groups_app.command("describe")
def describe_group(group: str, description: str, agent: AgentOption = None) -> None:
    """Set a group's description ("" removes it)."""
    described = with_office(
        lambda office: office.update_group(
            group, actor(agent), description=description or None, clear_description=not description
        )
    )
    console.print(f"group {described.name} described")


@groups_app.command("delete")
def delete_group(group: str, agent: AgentOption = None) -> None:
    """Delete a group; its members stay customers."""
    with_office(lambda office: office.delete_group(group, actor(agent)))
    console.print(f"group {group} deleted")


@groups_app.command("assign")
def assign(group: str, customer_reference: str, agent: AgentOption = None) -> None:
    """Put a customer into a group."""
    added = with_office(lambda office: office.assign(customer_reference, group, actor(agent)))
    console.print(f"{customer_reference} {'added to' if added else 'was already in'} {group}")


@groups_app.command("unassign")
def unassign(group: str, customer_reference: str, agent: AgentOption = None) -> None:
    """Take a customer out of a group."""
    removed = with_office(lambda office: office.unassign(customer_reference, group, actor(agent)))
    console.print(f"{customer_reference} {'removed from' if removed else 'was not in'} {group}")
