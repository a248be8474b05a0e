"""Where the recorded runs sent their work (tests/histories/): since the `email-task-queues` patch every
email goes to an email queue of the run's shop, in bulk exactly when nobody waits for it right now,
and every other activity stays on the run's own queue; runs recorded before it (no marker) kept every
activity on their own queue, which is how they replay. A registration whose input has a `revision`
(workflows/registration.py) started after the split and asks no patch: it has no marker, and splits."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import payload_texts

from accounts.task_queues import KINDS, TaskQueues
from workflows.queues import EMAIL_QUEUES_PATCH

HISTORIES = sorted((Path(__file__).parent.parent / "histories").glob("*/*.json"))
EMAIL_ACTIVITIES = ("send_token_link", "send_notice", "send_mfa_code", "send_staff_lock_notice")
# the sends whose input names no template: each sends one (an MFA code; a staff member's lock notice, which
# the member may be waiting for at the sign-in form: not bulk, unlike a customer's)
TEMPLATE_OF = {"send_mfa_code": "mfa_code", "send_staff_lock_notice": "staff_locked"}
ALWAYS_BULK = ("reminder", "already_registered", "account_locked", "inactivity_reminder", "inactivity_warning")


def _started(events: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(events[0]["workflowExecutionStartedEventAttributes"])


def _channel(started: dict[str, Any]) -> str | None:
    field = started.get("searchAttributes", {}).get("indexedFields", {}).get("Channel")
    return json.loads(base64.b64decode(field["data"])) if field else None


def _input(scheduled: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(base64.b64decode(scheduled["input"]["payloads"][0]["data"])))


def _patched(history: dict[str, Any]) -> bool:
    """The run sends its emails to the email queues: it took the patch, or its input says it started after."""
    markers = [e for e in history["events"] if e["eventType"] == "EVENT_TYPE_MARKER_RECORDED"]
    if any(f'"{EMAIL_QUEUES_PATCH}"' in text for text in payload_texts({"events": markers})):
        return True
    payloads = _started(history["events"]).get("input", {}).get("payloads", [])
    first = json.loads(base64.b64decode(payloads[0]["data"])) if payloads else None
    return isinstance(first, dict) and int(first.get("revision") or 0) >= 1


def _ids(paths: list[Path]) -> list[str]:
    return [f"{p.parent.name}/{p.stem}" for p in paths]


@pytest.mark.parametrize("path", HISTORIES, ids=_ids(HISTORIES))
def test_emails_go_to_the_email_queues_and_everything_else_stays_on_the_runs_queue(path: Path) -> None:
    history = json.loads(path.read_text())
    events = history["events"]
    started = _started(events)
    own = started["taskQueue"]["name"]
    queues = TaskQueues.of(own)
    bulk_channel = _channel(started) == "import"
    patched = _patched(history)
    links = 0
    for event in events:
        if event["eventType"] != "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED":
            continue
        scheduled = event["activityTaskScheduledEventAttributes"]
        activity, queue = scheduled["activityType"]["name"], scheduled["taskQueue"]["name"]
        if activity not in EMAIL_ACTIVITIES or not patched:
            assert queue == own, f"{activity} of a {'patched' if patched else 'recorded-before'} run went to {queue}"
            continue
        template = TEMPLATE_OF.get(activity) or _input(scheduled)["template"]
        first_link = activity == "send_token_link" and template != "email_change_confirm" and links == 0
        links += activity == "send_token_link"
        bulk = template in ALWAYS_BULK or (bulk_channel and first_link)
        expected = queues.bulk_email if bulk else queues.email
        assert queue == expected, f"{template} went to {queue}, not {expected}"


def test_the_recordings_since_the_split_cover_both_email_queues_and_the_signin_queue() -> None:
    kinds: set[str] = set()
    lockout_queues: set[bool] = set()
    for path in HISTORIES:
        history = json.loads(path.read_text())
        if not _patched(history):
            continue
        started = _started(history["events"])
        queues = TaskQueues.of(started["taskQueue"]["name"])
        if started["workflowType"]["name"] == "LockoutWindowWorkflow":
            lockout_queues.add(started["taskQueue"]["name"] == queues.signin)
        for event in history["events"]:
            if event["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED":
                queue = event["activityTaskScheduledEventAttributes"]["taskQueue"]["name"]
                kinds.update(kind for kind in KINDS if queues.name(kind) == queue)
    assert kinds == set(KINDS), "record the branches again: python -m tests.histories.record"
    assert lockout_queues == {True}, "lockout windows run on the sign-in queue"
