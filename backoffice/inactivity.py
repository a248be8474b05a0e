"""Inactive accounts, for staff: where a customer stands (shown on the customer's page) and support's
exemption, which ends a running inactivity lifecycle and keeps the sweep away for good (audited)."""

from __future__ import annotations

from accounts import inactivity
from accounts.models import utcnow
from accounts.settings import Settings
from accounts.staff import StaffMember
from backoffice.base import Area, writable_customer
from backoffice.permissions import Conflict, authorize


def inactivity_timeline(settings: Settings) -> inactivity.Timeline | None:
    """The lifecycle's gaps, which date the next steps on the customer's page; None while it is off."""
    remind, warn, retire = settings.inactive_remind_after, settings.inactive_warn_after, settings.inactive_retire_after
    if remind is None or warn is None or retire is None:
        return None
    return inactivity.Timeline(remind, warn, retire)


class InactivityArea(Area):
    async def exempt_from_inactivity(self, customer_reference: str, staff: StaffMember, reason: str) -> None:
        """The customer is never reminded nor retired for inactivity; a running lifecycle ends. Again on
        an exempt customer: nothing changes, nothing is recorded. A retired one: Conflict (its deletion runs)."""
        authorize(staff, "customers.exempt_inactivity")
        async with self._sessions.begin() as session:
            customer = await writable_customer(session, customer_reference)
            if customer.inactivity_stage == inactivity.EXEMPT:
                return
            if customer.inactivity_stage == inactivity.RETIRED:  # the deletion was decided: it is on its way
                raise Conflict(f"{customer_reference}'s deletion for inactivity is under way")
            ended = inactivity.exempt(customer, utcnow())
            self._audit(session, customer_reference, "inactivity_exempted", staff, {"reason": reason, "ended": ended})
        if ended in inactivity.RUNNING:
            await self._accounts.inactivity.exempted(customer_reference)
