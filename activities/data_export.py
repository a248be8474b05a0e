"""A data export's activities: build and store the encrypted archive, and delete it at its expiry
(the rules and the archive's contents: accounts/data_exports.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from jinja2 import TemplateNotFound
from temporalio import activity

from accounts import data_exports
from accounts.db import SessionFactory
from accounts.emails import EmailRenderer
from accounts.mfa_secrets import SecretBox
from accounts.models import utcnow
from accounts.settings import Settings
from activities.lookup import load_customer


@dataclass
class PrepareExport:
    customer_reference: str
    export_id: str
    channel: str
    actor: str  # "customer", or the staff member's name
    requested_at: datetime
    expires_at: datetime


@dataclass
class DeleteExport:
    customer_reference: str
    export_id: str


class DataExportActivities:
    def __init__(self, sessions: SessionFactory, renderer: EmailRenderer, box: SecretBox, settings: Settings) -> None:
        self._sessions = sessions
        self._renderer = renderer
        self._box = box
        self._settings = settings

    @activity.defn
    async def prepare_data_export(self, request: PrepareExport) -> bool:
        """Store the archive (once per export id); False for a customer being deleted or anonymized."""
        async with self._sessions() as session:
            customer = await load_customer(session, request.customer_reference)
        return await data_exports.store(
            self._sessions,
            self._box,
            customer=customer,
            export_id=request.export_id,
            channel=request.channel,
            actor=request.actor,
            requested_at=request.requested_at,
            expires_at=request.expires_at,
            subject_of=self._subject,
        )

    @activity.defn
    async def delete_data_export(self, request: DeleteExport) -> bool:
        """Delete the archive; False when it was gone already (a retry, or the account's deletion)."""
        return await data_exports.expire(
            self._sessions, customer_reference=request.customer_reference, export_id=request.export_id, now=utcnow()
        )

    def _subject(self, template: str, locale: str) -> str:
        context = {"shop_name": self._settings.shop_name, "code": data_exports.MASKED, "staff_name": ""}
        try:
            return self._renderer.render_subject(template, locale, context)
        except TemplateNotFound:  # a template renamed or retired since: its name says what it was
            return template
