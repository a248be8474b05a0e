"""How the commands print: rich tables sized for pipes and log files, JSON for scripts, links whole."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import typer
from rich.console import Console


def output_console(*, stderr: bool = False) -> Console:
    """Rich lays tables out for 80 columns when the output is no terminal (a pipe, a log file); there it
    gets 200, so rows stay whole lines. A terminal keeps its width, and COLUMNS always wins."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or "COLUMNS" in os.environ else 200
    return Console(stderr=stderr, width=width)


console = output_console()
errors = output_console(stderr=True)


def echo_unwrapped(text: str) -> None:
    """A line as it is: never wrapped, cropped or styled (links must survive 80 columns and log files)."""
    console.print(text, soft_wrap=True, markup=False, highlight=False, emoji=False)


def echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, default=str, indent=2, ensure_ascii=False))


def when(value: Any) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M}"
