"""Imports run one way: each layer imports only its own layer and the layers below it.

Every module's imports are read with `ast` (top level, inside functions, under `TYPE_CHECKING` and inside
`workflow.unsafe.imports_passed_through()` blocks alike), and an import of a higher layer fails the test,
naming the file and the import. Tests are no layer; a new top-level package must be given one here.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Top first. The entry points (the command line starts the dev stack, which runs the API and the worker)
# stand over the back office's use cases, over the client (`starter`), over the workflows, over the
# activities, over the domain (`accounts`).
LAYERS: list[set[str]] = [
    {"bench"},  # measurements: drive the whole stack
    {"cli"},  # `accounts ...`: starts the dev stack, the API, the worker; prints the API's JSON shapes
    {"devstack"},  # `accounts dev`: runs the API and the worker beside a Temporal dev server and an SMTP sink
    {"api", "worker", "migrations"},  # the processes, and the schema's migrations (alembic's entry point)
    {"backoffice"},
    {"starter"},
    {"workflows"},
    {"activities"},
    {"accounts"},
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
NOT_CODE = {"tests", "templates", "docs", "deploy", "var", "build"}


def layer_of(path: Path) -> str:
    relative = path.relative_to(ROOT)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def parse(source: str) -> ast.Module:
    return ast.parse(source)


def imported_names(source: str, module: str) -> list[tuple[int, str]]:
    """(line, dotted name) of every import in the source; relative imports resolved against `module`."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = module.split(".")[: -node.level]
                found.append((node.lineno, ".".join([*package, *([node.module] if node.module else [])])))
            elif node.module:
                found.append((node.lineno, node.module))
    return found


def violations(path: Path, source: str) -> list[str]:
    relative = path.relative_to(ROOT)
    module = ".".join(relative.with_suffix("").parts)
    importer = layer_of(path)
    wrong = []
    for line, name in imported_names(source, module):
        target = name.split(".")[0]
        if target in RANK and RANK[target] < RANK[importer]:
            wrong.append(f"{relative}:{line} imports {name} ({target} is a layer above {importer})")
    return wrong


def source_files() -> list[Path]:
    return sorted(
        path
        for path in ROOT.rglob("*.py")
        if not path.relative_to(ROOT).parts[0].startswith(".") and path.relative_to(ROOT).parts[0] not in NOT_CODE
    )


def test_every_package_has_a_layer() -> None:
    unplaced = sorted({layer_of(path) for path in source_files()} - set(RANK))
    assert not unplaced, f"give these a layer in tests/test_layers.py: {unplaced}"


def all_violations() -> list[str]:
    return [problem for path in source_files() for problem in violations(path, path.read_text(encoding="utf-8"))]


def test_imports_run_one_way() -> None:
    # In a fresh interpreter: after the rest of the suite has run in this one, CPython 3.11.7's parser
    # raised "SystemError: AST constructor recursion depth mismatch" on large files (twice in CI, never
    # alone), even from a new thread.
    answer = subprocess.run([sys.executable, __file__], capture_output=True, text=True, check=True, timeout=60)
    wrong = json.loads(answer.stdout)
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_an_import_against_the_layers_is_found_wherever_it_stands() -> None:
    source = (
        "from temporalio import workflow\n"
        "with workflow.unsafe.imports_passed_through():\n"
        "    from starter.client import AccountsClient\n"
        "def later():\n"
        "    import workflows.registration\n"
        "from . import emails\n"
    )
    found = violations(ROOT / "activities" / "example.py", source)
    assert found == [
        "activities/example.py:3 imports starter.client (starter is a layer above activities)",
        "activities/example.py:5 imports workflows.registration (workflows is a layer above activities)",
    ]
    assert violations(ROOT / "workflows" / "example.py", "from activities.emails import EmailActivities\n") == []


if __name__ == "__main__":
    print(json.dumps(all_violations()))
