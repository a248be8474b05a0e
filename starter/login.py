"""Sign-in: the password check, its lockout bound, and the events the lockout workflows hear.

a valid device token of the account (accounts/device_tokens.py) -> reserve an attempt for that device only
otherwise reserve an attempt per client IP and per account (atomic; refused while locked -> LoginBlocked)
(untrusted attempts: first the process's memory of refusals, accounts/refusals.py: no database read)
verify the password (a dummy verification for unknown addresses: same cost, same answer)
success -> give the reservations back, rehash when the argon2 parameters changed; the client gets a
           device token (a new one, or the one it presented)
failure -> a failure that reaches a real account's threshold signal-with-starts its lockout workflow;
           devices, client IPs and unknown addresses lock in the database alone (no workflow)
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from accounts import device_tokens, metrics, pending_credentials, throttle
from accounts.db import SessionFactory
from accounts.email_address import email_key
from accounts.models import Customer
from accounts.passwords import PasswordHasher
from accounts.refusals import Place, RefusalMemory
from accounts.settings import Settings
from accounts.task_queues import TaskQueues
from accounts.temporal import lifecycle_attributes
from accounts.throttle import Blocked, Reservation, ThrottlePolicy
from starter.errors import LoginBlocked, LoginFailed, NotLocked, PasswordResetRequired, WrongCurrentPassword
from workflows.lockout import (
    THRESHOLD_CROSSED,
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
    device_token: str | None = None  # for the client to present next time (see accounts/device_tokens.py)
    known_device: bool = False  # the client presented a live device token of this account
    # what the sign-in read of the customer's inactivity (accounts/inactivity.py): whether it must write
    last_signed_in_at: datetime | None = None
    inactivity_stage: str | None = None


SecondFactor = Callable[[int, str], Awaitable[None]]
"""The sign-in's second-factor check (api/mfa_check.check_sign_in), given the customer's id and reference:
it raises to refuse the sign-in, before any device token is issued or renewed."""


def login_blocked(blocked: Blocked) -> LoginBlocked:
    """The refusal the client hears, whether the database or the memory of its refusals said it."""
    return LoginBlocked(max(60, math.ceil(blocked.retry_after.total_seconds())))


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
        self.device_policy = ThrottlePolicy(
            settings.lockout_device_max_failures, settings.lockout_window, settings.lockout_duration
        )
        # no more attempts of one account on their way to the database at once than could be admitted
        self.refusals = RefusalMemory(
            settings.lockout_refusal_memory, places=settings.lockout_max_failures, full=settings.lockout_duration
        )

    def remembered_subjects(self, email: str, client_ip: str) -> tuple[str, str]:
        """What the refusal memory names an untrusted attempt by: the typed address (keyed, as an unknown
        address's throttle subject) and the client network, both computed without a database read."""
        secret = self._settings.secret_key.get_secret_value()
        return throttle.email_subject(email, secret), throttle.ip_subject(client_ip, secret)

    @asynccontextmanager
    async def untrusted_attempt(self, email: str, client_ip: str) -> AsyncIterator[Place]:
        """An attempt without a device token: refused from memory (LoginBlocked) while its account or its
        client network is remembered as blocked, else admitted among the account's few attempts on their
        way to the database. Entered by the HTTP edge before the request budget, and by `authenticate`."""
        try:
            place = await self.refusals.enter(*self.remembered_subjects(email, client_ip))
        except Blocked as blocked:
            raise login_blocked(blocked) from None
        try:
            yield place
        finally:
            place.close()

    async def refused_despite_token(self, email: str, client_ip: str, device_token: str) -> LoginBlocked | None:
        """An attempt with a device token on an account remembered as blocked: one read of the token decides.
        None lets it go on to the database path (a live token of the account, or nothing remembered); a
        token that is none of the account's gets the remembered refusal, as the database path would give."""
        account, ip = self.remembered_subjects(email, client_ip)
        refusal = self.refusals.refused(account, ip)
        if refusal is None or refusal.subject != account:
            return None  # the client network alone was refused: a live token is not counted on it
        owner = self.refusals.owner(account)
        if owner is not None and await device_tokens.find(self._sessions, device_token, customer_id=owner):
            return None
        return login_blocked(refusal)

    def forget_refusals(self, email: str) -> None:
        """A lock this process lifted (support, a reset) is honoured here at once; other processes let go
        of it within ACCOUNTS_LOCKOUT_REFUSAL_MEMORY."""
        self.refusals.forget(self.remembered_subjects(email, "")[0])

    async def authenticate(
        self,
        email: str,
        password: str,
        *,
        client_ip: str,
        device_token: str | None = None,
        second_factor: SecondFactor | None = None,
    ) -> Authenticated:
        """Raises LoginFailed (one answer for every reason), LoginBlocked (no password was checked) or
        PasswordResetRequired (the right password of an account whose reset was forced).

        `second_factor` runs after the password is right and before the device token: a sign-in it refuses
        (whatever it raises passes through) leaves no new device token and renews none, so a stolen
        password alone never makes a device known (which would spare it the lockout's account budget).

        `device_token`, when it is a live one of this account, counts the attempt on that device alone.
        Without one, a remembered refusal answers before any database read (accounts/refusals.py).
        Each outcome is counted (accounts_sign_ins_total)."""
        try:
            if device_token:  # the owner's known device is never refused from memory: the database decides
                who = await self._authenticate(
                    email, password, client_ip=client_ip, device_token=device_token, second_factor=second_factor
                )
            else:
                async with self.untrusted_attempt(email, client_ip) as place:
                    who = await self._authenticate(
                        email, password, client_ip=client_ip, place=place, second_factor=second_factor
                    )
        except LoginBlocked:
            metrics.SIGN_INS_BLOCKED.inc()
            raise
        except (LoginFailed, PasswordResetRequired):
            metrics.SIGN_INS_FAILED.inc()
            raise
        metrics.SIGN_INS_SUCCEEDED.inc()
        return who

    async def _authenticate(
        self,
        email: str,
        password: str,
        *,
        client_ip: str,
        device_token: str | None = None,
        place: Place | None = None,
        second_factor: SecondFactor | None = None,
    ) -> Authenticated:
        async with self._sessions() as session:
            customer = await session.scalar(select(Customer).where(Customer.email_key == email_key(email)))
        device = None
        if customer is not None and device_token:
            device = await device_tokens.find(self._sessions, device_token, customer_id=customer.id)
        if not await self._verify(customer, password, client_ip=client_ip, email=email, device=device, place=place):
            raise LoginFailed()
        assert customer is not None
        if customer.registered_at is None or customer.anonymized_at is not None:
            raise LoginFailed()  # the right password of an account that cannot sign in is no attack
        if customer.password_reset_required:
            raise PasswordResetRequired()
        assert customer.password_hash is not None
        if self._hasher.needs_rehash(customer.password_hash):
            await self._rehash(customer, password)
        if second_factor is not None:
            try:
                await second_factor(customer.id, customer.customer_reference)
            except BaseException:  # its own answer (Glue's 5900/5901) passes through, counted here
                metrics.SIGN_INS_SECOND_FACTOR_REFUSED.inc()
                raise
        lifetime = self._settings.device_token_lifetime
        if device is not None:
            await device_tokens.renew(self._sessions, device, lifetime)
            issued = device_token
        else:
            keep = self._settings.device_tokens_per_account
            issued = await device_tokens.issue(self._sessions, customer_id=customer.id, lifetime=lifetime, keep=keep)
        return Authenticated(
            customer.id,
            customer.customer_reference,
            customer.token_version,
            issued,
            known_device=device is not None,
            last_signed_in_at=customer.last_signed_in_at,
            inactivity_stage=customer.inactivity_stage,
        )

    async def check_password(self, customer: Customer, password: str, *, client_ip: str) -> None:
        """The signed-in customer's current password, under the same lockout as sign-in."""
        if not await self._verify(customer, password, client_ip=client_ip, email=customer.email):
            raise WrongCurrentPassword()

    async def _verify(
        self,
        customer: Customer | None,
        password: str,
        *,
        client_ip: str,
        email: str,
        device: str | None = None,
        place: Place | None = None,
    ) -> bool:
        """`device`: the hash of a live device token of `customer`; its attempts are counted on it alone.
        `place`: the untrusted attempt's place in the refusal memory's line, given up once reserved."""
        secret = self._settings.secret_key.get_secret_value()
        remembered = dict(zip(("account", "ip"), self.remembered_subjects(email, client_ip), strict=True))
        if device is None and (refusal := self.refusals.refused(*remembered.values())) is not None:
            raise login_blocked(refusal)  # a made-up device token, or the current-password check
        account = (
            throttle.customer_subject(customer.customer_reference)
            if customer is not None
            else throttle.email_subject(email, secret)
        )
        subjects = (
            [(device_tokens.subject(device), self.device_policy)]
            if device is not None
            # the account first: an attack on a locked account is refused by reads alone (throttle.reserve)
            else [(account, self.customer_policy), (throttle.ip_subject(client_ip, secret), self.ip_policy)]
        )
        reservations: list[tuple[Reservation, ThrottlePolicy]] = []
        owner = customer.id if customer is not None else None

        def remember(blocked: Blocked) -> str:  # the next attempts are answered from memory, for a few seconds
            key = remembered["ip" if blocked.subject.startswith("ip:") else "account"]
            self.refusals.remember(key, blocked, owner=owner if key == remembered["account"] else None)
            return key

        crossed: list[str] = []  # what this attempt's threshold blocks until its password is checked
        try:
            for subject, policy in subjects:
                reservations.append((await throttle.reserve(self._sessions, subject, policy), policy))
            if device is None:
                crossed = [remember(b) for r, p in reservations if (b := r.refusal_after(p)) is not None]
        except Blocked as blocked:
            if device is None:
                remember(blocked)
            await self._release(reservations, forget=False)
            raise login_blocked(blocked) from None
        finally:
            if place is not None:
                place.release()  # reserved or refused: the next attempt of this account may go on

        try:
            if customer is None or customer.password_hash is None:
                await self._hasher.dummy_verify_async(password)
                matches = False
            elif device is not None:  # not behind the verifications of an attack on this account
                matches = await self._hasher.verify_known_device_async(customer.password_hash, password)
            else:
                matches = await self._hasher.verify_async(customer.password_hash, password)
        except BaseException:  # cancelled or broken: this was no failed guess, give the attempt back
            await self._release(reservations, forget=False)
            self._forget(crossed)
            raise
        if matches:
            await self._release(reservations, forget=True)
            self._forget(crossed)
            return True
        for reservation, policy in reservations:
            if not reservation.crossed(policy):
                continue  # failures below the threshold cost one UPDATE, and the cluster nothing
            if reservation.kind == "customer" and customer is not None:
                await self._tell_lockout(reservation, policy, customer)
            else:  # a device, a client IP, an unknown address: nothing to email, nobody to unlock
                await throttle.lock(self._sessions, reservation, policy)
        return False

    def _forget(self, keys: list[str]) -> None:
        for key in keys:
            self.refusals.forget(key)

    async def _release(self, reservations: list[tuple[Reservation, ThrottlePolicy]], *, forget: bool) -> None:
        for reservation, _ in reservations:
            forget_failures = forget and reservation.kind != "ip"  # a device's, too: its owner is back
            await throttle.release(self._sessions, reservation, forget_failures=forget_failures)

    async def unlock_link_locale(self, link_token: str) -> str | None:
        """The language of a live unlock link's customer (its page speaks it); None for a dead link."""
        customer = await device_tokens.unlock_link_customer(self._sessions, link_token)
        return customer.locale if customer is not None else None

    async def redeem_unlock_link(self, link_token: str) -> str | None:
        """The lock email's link, used once: a device token for the browser that redeemed it, or None."""
        redeemed = await device_tokens.redeem_unlock_link(
            self._sessions,
            link_token,
            lifetime=self._settings.device_token_lifetime,
            keep=self._settings.device_tokens_per_account,
        )
        return redeemed[1] if redeemed is not None else None

    async def unlock(self, customer_reference: str, *, agent: str, reason: str) -> Unlocked:
        handle = self._client.get_workflow_handle_for(
            LockoutWindowWorkflow.run, lockout_id(throttle.customer_subject(customer_reference))
        )
        try:
            unlocked = await handle.execute_update(LockoutWindowWorkflow.unlock, Unlock(agent, reason))
        except WorkflowUpdateFailedError as error:
            raise NotLocked(f"{customer_reference} is not locked") from error
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                raise NotLocked(f"{customer_reference} is not locked") from error
            raise
        async with self._sessions() as session:
            email = await session.scalar(
                select(Customer.email).where(Customer.customer_reference == customer_reference)
            )
        if email is not None:
            self.forget_refusals(email)
        return unlocked

    async def _tell_lockout(self, reservation: Reservation, policy: ThrottlePolicy, customer: Customer) -> None:
        try:
            await self._start_lockout(reservation, policy, customer)
        except (RPCError, RuntimeError) as error:  # RuntimeError: the client could not connect at all
            # The count in the database still bounds verifications; the block then ends by the database
            # clock (see throttle.reserve). A sign-in must not fail because Temporal is unreachable.
            log.warning("lockout workflow for %s not told: %s", reservation.kind, type(error).__name__)

    async def _start_lockout(self, reservation: Reservation, policy: ThrottlePolicy, customer: Customer) -> None:
        settings = self._settings
        await self._client.start_workflow(
            LockoutWindowWorkflow.run,
            LockoutInput(
                subject=reservation.subject,
                customer_reference=customer.customer_reference,
                policy=LockoutPolicy(
                    max_failures=policy.max_failures,
                    window=policy.window,
                    lock_duration=policy.lock_duration,
                    escalation_factor=settings.lockout_escalation_factor,
                    max_lock_duration=settings.lockout_max_duration,
                    escalation_period=settings.lockout_escalation_period,
                    history_limit=settings.lockout_history_limit,
                ),
            ),
            id=lockout_id(reservation.subject),
            task_queue=TaskQueues(settings.task_queue).signin,  # sign-in throttling apart from the lifecycles
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            start_signal=THRESHOLD_CROSSED,
            search_attributes=lifecycle_attributes(customer.customer_reference),
        )

    async def _rehash(self, customer: Customer, password: str) -> None:
        try:
            await self._start_rehash(customer, password)
        except (RPCError, RuntimeError, SQLAlchemyError) as error:  # the next sign-in tries again
            log.warning("rehash for %s not started: %s", customer.customer_reference, type(error).__name__)

    async def _start_rehash(self, customer: Customer, password: str) -> None:
        new_hash = await self._hasher.hash_async(password)
        # both hashes wait in the database; the workflow carries the id (issue 15)
        credential_id = await pending_credentials.store(
            self._sessions,
            lifetime=self._settings.pending_credential_lifetime,
            customer_reference=customer.customer_reference,
            password_hash=new_hash,
            replaces_hash=customer.password_hash or "",
        )
        await self._client.start_workflow(
            PasswordRehashWorkflow.run,
            Rehash(customer.customer_reference, credential_id=credential_id),
            id=f"password-rehash:{customer.customer_reference}",
            task_queue=self._settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=lifecycle_attributes(customer.customer_reference),
        )
