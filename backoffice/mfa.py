"""A customer's multi-factor authentication as support sees it: which methods are on, and their removal
(for a customer who lost their phone or mailbox): audited with the reason, and the customer is emailed.
"""

from __future__ import annotations

from accounts import mfa
from accounts.staff import StaffMember
from backoffice.base import CHANNEL, Area, require_customer
from backoffice.permissions import Conflict, InvalidInput, authorize


class MfaArea(Area):
    async def remove_mfa(self, customer_reference: str, staff: StaffMember, reason: str) -> list[str]:
        """Remove every MFA method (and the recovery codes) of the customer; returns the types removed.
        Conflict when there was none."""
        authorize(staff, "customers.remove_mfa")
        reason = reason.strip()
        if not reason:
            raise InvalidInput("reason", "must not be blank")
        async with self._sessions() as session:
            customer = await require_customer(session, customer_reference)
        removed = await mfa.deactivate(self._sessions, customer, None, channel=CHANNEL, actor=staff.name)
        if not removed:
            raise Conflict(f"{customer_reference} has no multi-factor authentication")
        async with self._sessions.begin() as session:
            self._audit(session, customer_reference, "mfa_removed_by_support", staff,
                        {"types": removed, "reason": reason})  # fmt: skip
        await self._accounts.mfa.removed_by_support(customer_reference, removed)
        return removed
