"""MFA side effects that are not emails: the end of an activation nobody verified (workflows/mfa.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from temporalio import activity

from accounts import mfa
from accounts.db import SessionFactory


@dataclass
class EndActivation:
    customer_reference: str
    type: str
    deadline: datetime  # the expiry the workflow waited for


@dataclass
class ActivationEnd:
    dropped: bool
    next_deadline: datetime | None  # an activation started again since: its deadline, to wait for next


class MfaActivities:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    @activity.defn
    async def end_expired_activation(self, request: EndActivation) -> ActivationEnd:
        """Drop the method if it is still pending with this deadline (or an earlier one)."""
        dropped, later = await mfa.end_expired_activation(
            self._sessions, request.customer_reference, request.type, request.deadline
        )
        return ActivationEnd(dropped, later)
