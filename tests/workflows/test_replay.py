"""Recorded histories replay against today's workflow code: a change that would break running
workflows fails here (guard it with workflow.patched). Re-record with new scenarios when adding them."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from worker import WORKFLOWS

HISTORIES = sorted((Path(__file__).parent.parent / "histories").glob("*.json"))


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_recorded_history_replays(path: Path) -> None:
    text = path.read_text()
    workflow_id = path.stem  # only used in messages
    replayer = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(WorkflowHistory.from_json(workflow_id, text), raise_on_replay_failure=True)
    assert result.replay_failure is None


def test_there_are_histories_for_every_workflow() -> None:
    text = " ".join(p.read_text() for p in HISTORIES)
    for workflow in ("RegistrationWorkflow", "LockoutWindowWorkflow", "EmailChangeWorkflow"):
        assert workflow in text
