"""Sign-in: the password check, its lockout bound, and the events the lockout workflows hear.

reserve an attempt per client IP and per customer (atomic; refused while locked -> LoginBlocked)
verify the password (a dummy verification for unknown addresses: same cost, same answer)
success -> give the reservations back, rehash when the argon2 parameters changed
failure -> the first failure of a window and the N-th one signal-with-start the lockout workflow
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from sqlalchemy import select
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from accounts import throttle
from accounts.db import SessionFactory
from accounts.email_address import email_key
from accounts.models import Customer
from accounts.passwords import PasswordHasher
from accounts.settings import Settings
from accounts.temporal import lifecycle_attributes
from accounts.throttle import Blocked, Reservation, ThrottlePolicy
from starter.errors import LoginBlocked, LoginFailed, NotLocked, PasswordResetRequired, WrongCurrentPassword
from workflows.lockout import (
    THRESHOLD_CROSSED,
    WINDOW_OPENED,
    LockoutInput,
    LockoutPolicy,
    LockoutWindowWorkflow,
    Unlock,
    Unlocked,
    ip_lockout_workflow_id,
    lockout_workflow_id,
)
from workflows.password_rehash import PasswordRehashWorkflow, Rehash

log = logging.getLogger("accounts.login")


@dataclass
class Authenticated:
    customer_id: int
    customer_reference: str
    token_version: int


def lockout_id(subject: str) -> str:
    kind, _, key = subject.partition(":")
    if kind == "customer":
        return lockout_workflow_id(key)
    return ip_lockout_workflow_id(key) if kind == "ip" else f"lockout-email:{key}"


class Logins:
    def __init__(self, client: Client, settings: Settings, sessions: SessionFactory, hasher: PasswordHasher) -> None:
        self._client = client
        self._settings = settings
        self._sessions = sessions
        self._hasher = hasher
        self.customer_policy = ThrottlePolicy(
            settings.lockout_max_failures, settings.lockout_window, settings.lockout_duration
        )
        self.ip_policy = ThrottlePolicy(
            settings.lockout_ip_max_failures, settings.lockout_ip_window, settings.lockout_ip_duration
        )

    async def authenticate(self, email: str, password: str, *, client_ip: str) -> Authenticated:
        """Raises LoginFailed (one answer for every reason), LoginBlocked (no password was checked) or
        PasswordResetRequired (the right password of an account whose reset was forced)."""
        async with self._sessions() as session:
            customer = await session.scalar(select(Customer).where(Customer.email_key == email_key(email)))
        if not await self._verify(customer, password, client_ip=client_ip, email=email):
            raise LoginFailed()
        assert customer is not None
        if customer.registered_at is None or customer.anonymized_at is not None:
            raise LoginFailed()  # the right password of an account that cannot sign in is no attack
        if customer.password_reset_required:
            raise PasswordResetRequired()
        assert customer.password_hash is not None
        if self._hasher.needs_rehash(customer.password_hash):
            await self._rehash(customer, password)
        return Authenticated(customer.id, customer.customer_reference, customer.token_version)

    async def check_password(self, customer: Customer, password: str, *, client_ip: str) -> None:
        """The signed-in customer's current password, under the same lockout as sign-in."""
        if not await self._verify(customer, password, client_ip=client_ip, email=customer.email):
            raise WrongCurrentPassword()

    async def _verify(self, customer: Customer | None, password: str, *, client_ip: str, email: str) -> bool:
        secret = self._settings.secret_key.get_secret_value()
        account = (
            throttle.customer_subject(customer.customer_reference)
            if customer is not None
            else throttle.email_subject(email, secret)
        )
        subjects = [(throttle.ip_subject(client_ip, secret), self.ip_policy), (account, self.customer_policy)]
        reservations: list[tuple[Reservation, ThrottlePolicy]] = []
        try:
            for subject, policy in subjects:
                reservations.append((await throttle.reserve(self._sessions, subject, policy), policy))
        except Blocked as blocked:
            await self._release(reservations, forget=False)
            raise LoginBlocked(max(60, math.ceil(blocked.retry_after.total_seconds()))) from None

        try:
            if customer is None or customer.password_hash is None:
                await self._hasher.dummy_verify_async(password)
                matches = False
            else:
                matches = await self._hasher.verify_async(customer.password_hash, password)
        except BaseException:  # cancelled or broken: this was no failed guess, give the attempt back
            await self._release(reservations, forget=False)
            raise
        if matches:
            await self._release(reservations, forget=True)
            return True
        for reservation, policy in reservations:
            owner = customer if reservation.kind == "customer" else None
            await self._tell_lockout(reservation, policy, owner)
        return False

    async def _release(self, reservations: list[tuple[Reservation, ThrottlePolicy]], *, forget: bool) -> None:
        for reservation, _ in reservations:
            forget_failures = forget and reservation.kind != "ip"
            await throttle.release(self._sessions, reservation, forget_failures=forget_failures)

    async def unlock(self, customer_reference: str, *, agent: str, reason: str) -> Unlocked:
        handle = self._client.get_workflow_handle_for(
            LockoutWindowWorkflow.run, lockout_id(throttle.customer_subject(customer_reference))
        )
        try:
            return await handle.execute_update(LockoutWindowWorkflow.unlock, Unlock(agent, reason))
        except WorkflowUpdateFailedError as error:
            raise NotLocked(f"{customer_reference} is not locked") from error
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                raise NotLocked(f"{customer_reference} is not locked") from error
            raise

    async def _tell_lockout(self, reservation: Reservation, policy: ThrottlePolicy, customer: Customer | None) -> None:
        crossed = reservation.crossed(policy)
        if not (reservation.opened_window or crossed):
            return  # failures inside a window cost the cluster nothing
        try:
            await self._start_lockout(reservation, policy, customer, crossed)
        except (RPCError, RuntimeError) as error:  # RuntimeError: the client could not connect at all
            # The count in the database still bounds verifications; the window then ends by the wall
            # clock (see throttle.reserve). A sign-in must not fail because Temporal is unreachable.
            log.warning("lockout workflow for %s not told: %s", reservation.kind, type(error).__name__)

    async def _start_lockout(
        self, reservation: Reservation, policy: ThrottlePolicy, customer: Customer | None, crossed: bool
    ) -> None:
        settings = self._settings
        await self._client.start_workflow(
            LockoutWindowWorkflow.run,
            LockoutInput(
                subject=reservation.subject,
                customer_reference=customer.customer_reference if customer else None,
                policy=LockoutPolicy(
                    max_failures=policy.max_failures,
                    window=policy.window,
                    lock_duration=policy.lock_duration,
                    escalation_factor=(
                        settings.lockout_escalation_factor
                        if reservation.kind in ("customer", "email")
                        else settings.lockout_ip_escalation_factor
                    ),
                    max_lock_duration=settings.lockout_max_duration,
                    escalation_period=settings.lockout_escalation_period,
                    history_limit=settings.lockout_history_limit,
                ),
            ),
            id=lockout_id(reservation.subject),
            task_queue=settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            start_signal=THRESHOLD_CROSSED if crossed else WINDOW_OPENED,
            search_attributes=lifecycle_attributes(customer.customer_reference if customer else None),
        )

    async def _rehash(self, customer: Customer, password: str) -> None:
        try:
            await self._start_rehash(customer, password)
        except (RPCError, RuntimeError) as error:  # the next sign-in tries again
            log.warning("rehash for %s not started: %s", customer.customer_reference, type(error).__name__)

    async def _start_rehash(self, customer: Customer, password: str) -> None:
        new_hash = await self._hasher.hash_async(password)
        await self._client.start_workflow(
            PasswordRehashWorkflow.run,
            Rehash(customer.customer_reference, customer.password_hash or "", new_hash),
            id=f"password-rehash:{customer.customer_reference}",
            task_queue=self._settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=lifecycle_attributes(customer.customer_reference),
        )
