"""Order history from the shop's order system: `accounts orders import FILE`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from accounts.settings import Settings
from cli.output import console

app = typer.Typer(help="Order history from the shop's order system.", no_args_is_help=True)


@app.command("import")
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
