"""New-device alert: a sign-in from a device the customer had not signed in from, told to them once.

the "new sign-in" email (when, the device, the network prefix, a "this wasn't me" link minted by the
    email activity) -> done

The id names the sign-in (`new-device:{ref}:{session id}`), so one sign-in alerts once. The input carries
the session id, never the network prefix or the user agent: the activity reads them from the session's row.

Its other parts: started after the sign-in's answer by `AccountsClient.customer_sessions.alert_new_device`
(starter/customer_sessions.py) from POST /access-tokens (api/routes/access_tokens.py); the new device is
decided by accounts/customer_sessions.py; email templates/emails/<locale>/new_device.*; the link's page
api/routes/not_me.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.emails import NEW_DEVICE_EMAIL, EmailActivities, NoticeInput
    from workflows.keys import lifecycle_key
    from workflows.queues import email_options
    from workflows.registration import ACTIVITY_OPTIONS


@dataclass
class NewDeviceAlert:
    customer_reference: str
    session_id: str  # the sign-in's refresh-token family (accounts/customer_sessions.py)
    signed_in_at: datetime


def new_device_alert_id(customer_reference: str, session_id: str) -> str:
    return f"new-device:{customer_reference}:{session_id}"


@workflow.defn
class NewDeviceAlertWorkflow:
    @workflow.run
    async def run(self, alert: NewDeviceAlert) -> bool:
        return await workflow.execute_activity_method(
            EmailActivities.send_notice,
            NoticeInput(
                alert.customer_reference,
                NEW_DEVICE_EMAIL,
                f"{lifecycle_key()}/alert",
                changed_at=alert.signed_in_at,
                session_id=alert.session_id,
            ),
            **ACTIVITY_OPTIONS,
            **email_options(),
        )
