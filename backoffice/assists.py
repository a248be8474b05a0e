"""Agent assistance in the back office: an agent's "Assist this customer" (a storefront token acting for the
customer, accounts/assists.py), the customer's running assistance sessions, and an admin ending one.

The session's steps are audited by its workflow (workflows/assist.py) with the agent as actor; an admin's
end names the admin in the end's audit row (`ended_by`).
"""

from __future__ import annotations

from accounts import assists
from accounts.models import AgentAssist, utcnow
from accounts.staff import StaffMember
from backoffice.base import Area, require_customer
from backoffice.permissions import Conflict, SessionNotFound, authorize
from starter.assists import AssistNotRunning, Impersonation, ImpersonationRefused


class AssistsArea(Area):
    async def assist_customer(self, customer_reference: str, staff: StaffMember) -> Impersonation:
        """Start an assistance session of the agent `staff` for the customer (the caller issues its token).
        CustomerNotFound for an unknown customer, Conflict for one that cannot be assisted (anonymized,
        unverified)."""
        authorize(staff, "customers.assist")
        async with self._sessions() as session:
            await require_customer(session, customer_reference)
        try:
            return await self._accounts.assists.begin(staff, customer_reference)
        except ImpersonationRefused:
            raise Conflict(f"{customer_reference} cannot be assisted: the account is not verified") from None

    async def assist_sessions(self, customer_reference: str, staff: StaffMember) -> list[AgentAssist]:
        """The customer's running assistance sessions, newest first."""
        authorize(staff, "customers.view")
        async with self._sessions() as session:
            customer = await require_customer(session, customer_reference)
            return await assists.live_assists(session, customer.id, utcnow())

    async def end_assist(self, customer_reference: str, assist_id: str, staff: StaffMember) -> None:
        """End a running assistance session now (its token is refused from the moment this returns);
        SessionNotFound when it is none of this customer's running ones."""
        authorize(staff, "assists.end")
        running = await self.assist_sessions(customer_reference, staff)
        if assist_id not in {a.id for a in running}:
            raise SessionNotFound(assist_id)
        try:
            await self._accounts.assists.end(
                customer_reference, assist_id, reason="ended_by_admin", ended_by=staff.name
            )
        except AssistNotRunning:
            raise SessionNotFound(assist_id) from None
