"""Recorded histories replay against today's workflow code: a change that would break running
workflows fails here (guard it with workflow.patched).

The histories sit in tests/histories/<workflow>/<branch>.json, written by tests/histories/record.py
(see its docstring: record the branches a workflow change touches; keep the old files, they stand for
runs already in production). <branch>@<time>.json files are earlier code versions' recordings of a
branch. The coverage test below holds the branches that must have a recording, for every workflow the
worker registers; the mutation test proves the replay catches a changed command sequence.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import RECORDER_PASSWORDS, payload_texts
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

from accounts.temporal import PLAIN_DATA_CONVERTER
from worker import WORKFLOWS

HISTORIES_DIR = Path(__file__).parent.parent / "histories"
HISTORIES = sorted(HISTORIES_DIR.glob("*/*.json"))
# The histories are recorded unencrypted (ACCOUNTS_PAYLOAD_ENCRYPTION=false: readable for review and for the
# scan below); the codec changes payload bytes only, never the commands a replay compares.
CONVERTER = PLAIN_DATA_CONVERTER

# workflow type -> its directory, and the branches that must have a recording there
REQUIRED: dict[str, tuple[str, str]] = {
    "RegistrationWorkflow": (
        "registration",
        "verified reminded-confirmed expired-keep expired-anonymize duplicate-address resend manual-verify"
        " email-proven imported imported-without-password",
    ),
    "PasswordResetWorkflow": (
        "password-reset",
        "completed expired completed-before-tell-registration tell-registration forced forced-over-running"
        " continue-as-new continued",
    ),
    "LockoutWindowWorkflow": ("lockout", "window-closed lock-timer lock-unlock continue-as-new continued"),
    "EmailChangeWorkflow": ("email-change", "confirmed superseded taken expired undone"),
    "AnonymizationWorkflow": ("anonymization", "anonymized running-lifecycles"),
    "PasswordChangeWorkflow": ("password-change", "changed"),
    "PasswordRehashWorkflow": ("password-rehash", "rehashed"),
    "CustomerImportWorkflow": ("customer-import", "completed continue-as-new continued cancelled"),
    "StaffLockNoticeWorkflow": ("staff-lock-notice", "mailed"),
    "ThrottleCleanupWorkflow": ("throttle-cleanup", "cleaned"),
    "MfaCodeWorkflow": ("mfa-code", "sent"),
    "MfaActivationWorkflow": ("mfa-activation", "expired verified continue-as-new continued"),
    "MfaRemovedWorkflow": ("mfa-removed", "notified"),
    "MfaActivatedWorkflow": ("mfa-activated", "notified"),
    "NewDeviceAlertWorkflow": ("new-device", "alerted"),
    "AssistWorkflow": ("assist", "ended expired"),
    "DataExportWorkflow": ("data-export", "expired"),
    "InactivityWorkflow": ("inactivity", "kept retired signed-in"),
    "InactivitySweepWorkflow": ("inactivity-sweep", "swept continue-as-new continued"),
}


def events(path: Path) -> list[dict[str, Any]]:
    return list(json.loads(path.read_text())["events"])


def workflow_type(path: Path) -> str:
    return str(events(path)[0]["workflowExecutionStartedEventAttributes"]["workflowType"]["name"])


def first_activity(path: Path) -> str | None:
    for event in events(path):
        if event["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED":
            return str(event["activityTaskScheduledEventAttributes"]["activityType"]["name"])
    return None


def history(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.relative_to(HISTORIES_DIR).as_posix(), path.read_text())


def type_name(cls: type) -> str:
    name = workflow._Definition.must_from_class(cls).name
    assert name is not None, f"{cls.__name__} is a dynamic workflow"
    return name


def ids(paths: list[Path]) -> list[str]:
    return [p.relative_to(HISTORIES_DIR).with_suffix("").as_posix() for p in paths]


# --- replay ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", HISTORIES, ids=ids(HISTORIES))
async def test_recorded_history_replays(path: Path) -> None:
    replayer = Replayer(workflows=WORKFLOWS, data_converter=CONVERTER)
    result = await replayer.replay_workflow(history(path), raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure!r}"


def test_every_registered_workflow_has_a_history_for_each_branch() -> None:
    registered = {type_name(cls) for cls in WORKFLOWS}
    assert registered - REQUIRED.keys() == set(), "record its branches (tests/histories/record.py), list them here"
    assert REQUIRED.keys() - registered == set(), "no longer registered by the worker: drop it from REQUIRED"
    missing = [
        f"{directory}/{branch}.json"
        for directory, branches in REQUIRED.values()
        for branch in branches.split()
        if not (HISTORIES_DIR / directory / f"{branch}.json").exists()
    ]
    assert missing == [], "record them: python -m tests.histories.record " + " ".join(m[:-5] for m in missing)
    directories = {directory: name for name, (directory, _) in REQUIRED.items()}
    for path in HISTORIES:
        assert directories.get(path.parent.name) == workflow_type(path), f"{path} is a {workflow_type(path)} history"
    assert not list(HISTORIES_DIR.glob("*.json")), "histories go in a workflow's directory"


# --- no secrets ------------------------------------------------------------------------------------------


def _fields(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from _fields(value)
    elif isinstance(node, list):
        for value in node:
            yield from _fields(value)


def _is_token_hash(value: Any) -> bool:
    return isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value) is not None


@pytest.mark.parametrize("path", HISTORIES, ids=ids(HISTORIES))
def test_histories_hold_no_password_or_token(path: Path) -> None:
    text = path.read_text()
    payloads = payload_texts(json.loads(text))
    readable = "\n".join([text, *payloads])
    assert "token=" not in readable  # a link with its token
    assert [p for p in RECORDER_PASSWORDS if p in readable] == []
    for payload in payloads:
        if not payload.startswith(("{", "[")):
            continue
        for key, value in _fields(json.loads(payload)):
            if "password" in key and isinstance(value, str):
                assert value.startswith("$argon2"), f"{key} holds more than a hash"
            if "token" in key:
                assert key in ("token_hash", "token_hashes"), key
                assert all(_is_token_hash(v) for v in (value if isinstance(value, list) else [value])), key


# Today's recordings: the files without "@" (those stand for earlier code versions' runs), except a branch
# that by its name is the code before a patch. Since issue 15 no payload carries a password hash (they
# wait in pending_credentials) and only an email change carries addresses (the new one is not in the
# database until it is confirmed, the old one is not there after it).
BEFORE_A_PATCH = {"password-reset/completed-before-tell-registration"}
CURRENT = [p for p in HISTORIES if "@" not in p.name and ids([p])[0] not in BEFORE_A_PATCH]
ADDRESS = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")


@pytest.mark.parametrize("path", CURRENT, ids=ids(CURRENT))
def test_todays_histories_hold_no_password_hash_and_no_address_they_do_not_need(path: Path) -> None:
    text = path.read_text()
    readable = "\n".join([text, *payload_texts(json.loads(text))])
    assert "$argon2" not in readable and "$2y$" not in readable and "$2b$" not in readable
    if path.parent.name != "email-change":
        assert ADDRESS.findall(readable) == []


# --- the replay catches a change --------------------------------------------------------------------------

# The call starts its statement (`x = await ...`, `return await ...`, `await ...`): a sleep fits on the line above.
_CALL = re.compile(r"workflow\.execute_activity_method\(\s*\w+\.(\w+)\b")
_STATEMENT = re.compile(r"^\s*(\w+ = |return )?await workflow\.execute_activity_method\(")
MUTABLE = [p for p in HISTORIES if first_activity(p) is not None]


@pytest.fixture(scope="module")
def with_sleep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The workflow class built from a copy of its module with `await workflow.sleep(1)` before each call of
    one activity, imported under a new module name (the real class stays as it is)."""
    directory = tmp_path_factory.mktemp("mutated")
    made: dict[tuple[type, str], type] = {}

    def build(cls: type, activity: str) -> type:
        if (cls, activity) in made:
            return made[(cls, activity)]
        source = Path(inspect.getsourcefile(cls) or "").read_text()
        starts = sorted({source.rfind("\n", 0, m.start()) + 1 for m in _CALL.finditer(source) if m[1] == activity})
        assert starts, f"{cls.__name__} has no execute_activity_method call of {activity}"
        for start in reversed(starts):
            line = source[start : source.index("\n", start)]
            assert _STATEMENT.match(line), f"a call this test cannot precede with a sleep: {line.strip()}"
            indent = line[: len(line) - len(line.lstrip())]
            source = f"{source[:start]}{indent}await workflow.sleep(1)\n{source[start:]}"
        name = f"mutated_{cls.__name__}_{activity}"
        file = directory / f"{name}.py"
        file.write_text(source)
        spec = importlib.util.spec_from_file_location(name, file)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the class body runs
        spec.loader.exec_module(module)
        made[(cls, activity)] = getattr(module, cls.__name__)
        return made[(cls, activity)]

    yield build
    for cls, activity in made:
        sys.modules.pop(f"mutated_{cls.__name__}_{activity}", None)


@pytest.mark.parametrize("path", MUTABLE, ids=ids(MUTABLE))
async def test_a_sleep_before_the_first_activity_fails_the_replay(path: Path, with_sleep: Any) -> None:
    (cls,) = [c for c in WORKFLOWS if type_name(c) == workflow_type(path)]
    activity = first_activity(path)
    assert activity is not None
    # unsandboxed: the sandbox would re-import the class's module by name, and this one has no importable name
    replayer = Replayer(
        workflows=[with_sleep(cls, activity)], data_converter=CONVERTER, workflow_runner=UnsandboxedWorkflowRunner()
    )
    result = await replayer.replay_workflow(history(path), raise_on_replay_failure=False)
    assert isinstance(result.replay_failure, workflow.NondeterminismError), result.replay_failure


def test_the_mutation_test_covers_every_workflow_with_an_activity() -> None:
    with_activities = {
        type_name(cls) for cls in WORKFLOWS if _CALL.search(Path(inspect.getsourcefile(cls) or "").read_text())
    }
    assert with_activities, "_CALL finds no activity call in any workflow: it no longer matches the code"
    assert with_activities <= {workflow_type(p) for p in MUTABLE}
