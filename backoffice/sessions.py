"""Where a customer is signed in, for staff: the customer's live sessions (accounts/customer_sessions.py),
and ending one (audited, as the customer's own DELETE /customers/{ref}/sessions/{id} does it)."""

from __future__ import annotations

from accounts import customer_sessions
from accounts.models import CustomerSession
from accounts.staff import StaffMember
from backoffice.base import Area, require_customer
from backoffice.permissions import SessionNotFound, authorize


class CustomerSessionsArea(Area):
    async def customer_sessions(self, customer_reference: str, staff: StaffMember) -> list[CustomerSession]:
        """The customer's live sessions, the most recently used first. CustomerNotFound for an unknown one."""
        authorize(staff, "customers.view")
        async with self._sessions() as session:
            customer = await require_customer(session, customer_reference)
            return await customer_sessions.live_sessions(session, customer.id)

    async def end_customer_session(self, customer_reference: str, session_id: str, staff: StaffMember) -> None:
        """End one live session of the customer (its refresh family and its access tokens); SessionNotFound
        when it is none of theirs or over already."""
        authorize(staff, "customers.end_session")
        async with self._sessions.begin() as session:
            customer = await require_customer(session, customer_reference)
            if not await customer_sessions.end(session, customer.id, session_id):
                raise SessionNotFound(session_id)
            self._audit(session, customer_reference, "session_ended", staff, {"sessionId": session_id})
