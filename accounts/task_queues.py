"""The task queues, one per kind of work, all named after ACCOUNTS_TASK_QUEUE.

    <base>             lifecycles: every workflow but the lockout windows, and their database activities
    <base>-signin      sign-in throttling: the lockout windows and their activities
    <base>-email       emails somebody waits for (a verification or reset link, a welcome): rate-bounded
    <base>-bulk-email  emails nobody waits for right now (an import's, reminders, lock and "already
                       registered" notices): rate-bounded apart, so their bursts never delay the others

The names derive from one setting so that a workflow, which never reads settings, finds its email
queues from its own queue's name (`TaskQueues.of(workflow.info().task_queue)`), and so that every
process of a shop (and every test, with its own base) agrees on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

QueueKind = Literal["lifecycles", "signin", "email", "bulk-email"]
KINDS: tuple[QueueKind, ...] = ("lifecycles", "signin", "email", "bulk-email")
SUFFIXES: dict[QueueKind, str] = {"lifecycles": "", "signin": "-signin", "email": "-email", "bulk-email": "-bulk-email"}


@dataclass(frozen=True)
class TaskQueues:
    base: str  # ACCOUNTS_TASK_QUEUE: the lifecycles' queue

    @classmethod
    def of(cls, task_queue: str) -> TaskQueues:
        """The queues of the shop that `task_queue` (any of its queues) belongs to."""
        for suffix in sorted(SUFFIXES.values(), key=len, reverse=True):
            if suffix and task_queue.endswith(suffix):
                return cls(task_queue[: -len(suffix)])
        return cls(task_queue)

    def name(self, kind: QueueKind) -> str:
        return self.base + SUFFIXES[kind]

    @property
    def lifecycles(self) -> str:
        return self.base

    @property
    def signin(self) -> str:
        return self.name("signin")

    @property
    def email(self) -> str:
        return self.name("email")

    @property
    def bulk_email(self) -> str:
        return self.name("bulk-email")
