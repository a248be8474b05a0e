"""Data export: a customer's copy of everything the service holds on them, downloadable for a while.

    build the archive, seal it and store it; audit the request (one activity, once per export id)
    email "your data is ready" with the download link (it needs the customer's sign-in)
    sleep until the export expires (`ACCOUNTS_DATA_EXPORT_EXPIRES_AFTER` after the request)
    delete the archive; audit it

The id names the export (`data-export:{ref}:{export id}`, the id random): one run per request. The input
carries the reference, the export id and who asked, never the data: the archive rests in the database,
encrypted, and no history holds any of it. A customer anonymized meanwhile has no archive left: the
deletion's scrub removed it (and ends this run, which carries the CustomerReference).

Its other parts: routes api/routes/data_exports.py (POST, GET list and download) and the back office's
(api/routes/backoffice/lifecycles.py); client `AccountsClient.data_exports` (starter/data_exports.py);
activities activities/data_export.py and activities/emails.py; the archive accounts/data_exports.py;
email templates/emails/<locale>/data_export_ready.*; its contents docs/data-export.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from accounts.temporal import CUSTOMER_REFERENCE, LIFECYCLE_STAGE
    from activities.data_export import DataExportActivities, DeleteExport, PrepareExport
    from activities.emails import EmailActivities, NoticeInput
    from workflows.keys import lifecycle_key
    from workflows.queues import email_options
    from workflows.registration import ACTIVITY_OPTIONS

READY_EMAIL = "data_export_ready"
PREPARING = "preparing"
DOWNLOADABLE = "downloadable"
EXPIRED = "expired"


def data_export_id(customer_reference: str, export_id: str) -> str:
    return f"data-export:{customer_reference}:{export_id}"


@dataclass
class DataExportInput:
    customer_reference: str
    export_id: str  # random (uuid4 hex): the archive's row
    channel: str  # api (the customer asked) | backoffice
    actor: str  # "customer", or the staff member's name
    expires_after: timedelta


@workflow.defn
class DataExportWorkflow:
    @workflow.run
    async def run(self, request: DataExportInput) -> bool:
        """True once the archive was made, mailed and deleted again; False for an anonymized customer."""
        workflow.upsert_search_attributes([CUSTOMER_REFERENCE.value_set(request.customer_reference)])
        requested_at = workflow.now()
        expires_at = requested_at + request.expires_after
        ref, export_id = request.customer_reference, request.export_id

        self._enter(PREPARING)
        prepare = PrepareExport(ref, export_id, request.channel, request.actor, requested_at, expires_at)
        stored = await workflow.execute_activity_method(
            DataExportActivities.prepare_data_export, prepare, **ACTIVITY_OPTIONS
        )
        if not stored:  # the customer was anonymized before: nothing to export, nobody to tell
            return False
        notice = NoticeInput(ref, READY_EMAIL, f"{lifecycle_key()}/ready", export_id=export_id, expires_at=expires_at)
        await workflow.execute_activity_method(
            EmailActivities.send_notice, notice, **ACTIVITY_OPTIONS, **email_options()
        )

        self._enter(DOWNLOADABLE)
        await workflow.sleep(expires_at - workflow.now())

        await workflow.execute_activity_method(
            DataExportActivities.delete_data_export, DeleteExport(ref, export_id), **ACTIVITY_OPTIONS
        )
        self._enter(EXPIRED)
        return True

    def _enter(self, stage: str) -> None:
        workflow.upsert_search_attributes([LIFECYCLE_STAGE.value_set(stage)])
        workflow.set_current_details(f"Data export stage: {stage}")
