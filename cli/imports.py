"""Customer imports: `accounts import customers FILE.csv`, and `accounts import status|cancel|rejected ID`.

The file is handed to the back office's `start_import` (the same use case as `POST /backoffice/imports`
and the web upload page); the command then follows the import's workflow with a progress bar on stderr
(rows/s, ETA) and ends with the report in Spryker's console format on stdout. Interrupting the command
does not stop the import: it is a workflow, and `accounts import status ID` finds it again.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text

from cli.office import AgentOption, JsonOption, actor, with_office
from cli.output import echo_json, echo_unwrapped, errors

if TYPE_CHECKING:
    from backoffice import BackOffice
    from starter.imports import ImportProgress

app = typer.Typer(help="Import customers from a shop system's export (Spryker's customer.csv).", no_args_is_help=True)
POLL_SECONDS = 0.5
ImportId = Annotated[str, typer.Argument(help="the import's id (imp_...), as the start printed it")]


class RowsPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text("-- rows/s" if task.speed is None else f"{task.speed:,.0f} rows/s")


@app.command("customers")
def import_customers(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="the customer.csv")],
    delimiter: Annotated[
        str, typer.Option("--delimiter", "-d", help="the column separator (one character, or tab)")
    ] = ",",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="validate the whole file, write nothing")] = False,
    agent: AgentOption = None,
    as_json: JsonOption = False,
) -> None:
    """Import (upsert by customer_reference) the customers of FILE; the exit code is 1 when a row failed."""
    from api.routes.backoffice import delimiter_of

    content = file.read_bytes()
    staff = actor(agent)

    async def run(office: BackOffice) -> ImportProgress:
        started = await office.start_import(
            content, filename=file.name, delimiter=delimiter_of(delimiter), dry_run=dry_run, staff=staff
        )
        errors.print(f"Import {started.import_id}: {started.rows} rows" + (" (dry run)" if dry_run else ""))
        return await follow(office, started.import_id, started.rows, quiet=as_json)

    progress = with_office(run)
    finish(progress, as_json)


async def follow(office: BackOffice, import_id: str, rows: int, *, quiet: bool = False) -> ImportProgress:
    """Poll the import's progress until it ends, drawing the bar on stderr."""
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RowsPerSecond(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn(
            "{task.fields[rejected]} rejected, emails {task.fields[started]} started, {task.fields[queued]} to start"
        ),
        console=errors,
        disable=quiet,
        transient=False,
    )
    with bar:
        task = bar.add_task("rows", total=rows or None, rejected=0, started=0, queued=0)
        while True:
            progress = await office.import_progress(import_id)
            bar.update(task, total=progress.rows_total or None, completed=progress.rows_read,
                       rejected=progress.rows_rejected, started=progress.emails_started,
                       queued=progress.emails_queued)  # fmt: skip
            if progress.state != "running":
                return progress
            await asyncio.sleep(POLL_SECONDS)


def report(progress: ImportProgress) -> list[str]:
    """Spryker's console report: the counts line, then one line per rejected row (the first 50)."""
    seconds = ((progress.finished_at or progress.started_at) - progress.started_at).total_seconds()
    rate = progress.rows_read / seconds if seconds > 0 else float(progress.rows_read)
    imported = progress.rows_read - progress.rows_rejected if progress.dry_run else progress.rows_written
    lines = [
        "Importer type: customer",
        f"Data set count: {progress.rows_total}, Data set imported: {imported}, "
        f"Data set failed: {progress.rows_rejected} "
        f"(Import id {progress.import_id}, {seconds:.1f} s, {rate:,.0f} rows/s)",
    ]
    if progress.dry_run:
        lines.append("Dry run: the file was checked, nothing was written.")
    elif progress.rows_created or progress.rows_updated:
        lines.append(f"Created: {progress.rows_created}, updated: {progress.rows_updated}")
    if progress.state == "cancelled":
        where = f" after line {progress.stopped_at_line}" if progress.stopped_at_line else ""
        lines.append(f"Cancelled{where}: the rows up to it are imported, the rest were not read.")
    elif progress.state == "failed":
        lines.append(f"The import failed after {progress.rows_read} rows: see {progress.ui_url}")
    lines += [f"Line {error.line}, column {error.column}: {error.message}" for error in progress.errors]
    if progress.rows_rejected > len(progress.errors):
        more = progress.rows_rejected - len(progress.errors)
        lines.append(f"... and {more} more: accounts import rejected {progress.import_id} rejected.csv")
    return lines


def failed(progress: ImportProgress) -> bool:
    return progress.rows_rejected > 0 or progress.state != "completed"


def finish(progress: ImportProgress, as_json: bool) -> None:
    if as_json:
        echo_json(progress_json(progress))
    else:
        for line in report(progress):
            echo_unwrapped(line)  # plain lines, never wrapped: an import job may read them
    if failed(progress):
        raise typer.Exit(1)


def progress_json(progress: ImportProgress) -> dict[str, Any]:
    from api.routes.backoffice import import_attributes

    return {"importId": progress.import_id, **import_attributes(progress)}


@app.command("status")
def status(import_id: ImportId, as_json: JsonOption = False) -> None:
    """An import's progress; waits for a running one with the progress bar (Ctrl-C leaves it running)."""

    async def run(office: BackOffice) -> ImportProgress:
        current = await office.import_progress(import_id)
        return await follow(office, import_id, current.rows_total, quiet=as_json)

    finish(with_office(run), as_json)


@app.command("cancel")
def cancel(import_id: ImportId, agent: AgentOption = None, as_json: JsonOption = False) -> None:
    """Cancel a running import: the rows written so far stay; the report says where it stopped."""
    staff = actor(agent)
    finish(with_office(lambda office: office.cancel_import(import_id, staff)), as_json)


@app.command("rejected")
def rejected(import_id: ImportId, file: Path) -> None:
    """Write the import's rejected rows to FILE, with error_line, error_column, error_message: fix, re-import."""
    text = with_office(lambda office: office.rejected_rows_csv(import_id))
    file.write_text(text, encoding="utf-8", newline="")
    errors.print(f"{max(0, len(text.splitlines()) - 1)} rejected rows written to {file}")
