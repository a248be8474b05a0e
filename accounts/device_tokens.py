"""Device tokens (OWASP's "device cookies"): proof that a client signed in to one account before.

Only a successful sign-in issues one: 256 random bits, stored as SHA-256 (as one-time tokens are:
full entropy needs no key), bound to one customer or one staff member, expiring after
ACCOUNTS_DEVICE_TOKEN_LIFETIME. A sign-in that presents a valid token of the account it names is
counted on that device's own subject (`device:<hash>`), not on the account's or the client IP's, so
the owner signs in from a known device while the account is locked for everyone else. A token of
another account, an expired or an unknown one counts as none: the attempt is untrusted, as today.
Each account keeps its newest ACCOUNTS_DEVICE_TOKENS_PER_ACCOUNT tokens; older ones are dropped.

The lock email carries a one-time link (`one_time_tokens.purpose` "unlock", minted by the email
activity, so no workflow history holds it): redeeming it proves the address and gives the browser
that opened it a device token, as a sign-in would. The lock stays for everyone else. A staff member's
lock email (workflows/staff_lock_notice.py) carries one too ("staff_unlock", page /backoffice/unlock).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update

from accounts.db import SessionFactory
from accounts.models import Customer, DeviceToken, OneTimeToken, Staff, utcnow
from accounts.tokens import hash_token, new_token

UNLOCK_LINK = "unlock"  # one_time_tokens.purpose of the lock email's link
UNLOCK_PATH = "/account/unlock"  # the storefront page of that link (api/routes/unlock.py)
STAFF_UNLOCK_LINK = "staff_unlock"  # the staff lock email's link (one_time_tokens.staff_id set)
STAFF_UNLOCK_PATH = "/backoffice/unlock"  # its back-office page (api/web/unlock.py)
MAX_TOKEN_LENGTH = 128  # a token is 43 characters; anything much longer is no token of ours


def subject(token_hash: str) -> str:
    """The throttle subject of one device (accounts.throttle): its failures are bounded on their own."""
    return f"device:{token_hash[:32]}"


async def issue(
    sessions: SessionFactory,
    *,
    customer_id: int | None = None,
    staff_id: int | None = None,
    lifetime: timedelta,
    keep: int,
) -> str:
    """A new token for the account (exactly one of customer_id, staff_id); its oldest tokens beyond `keep` go."""
    assert (customer_id is None) != (staff_id is None), "a device token belongs to exactly one account"
    token = new_token()
    now = utcnow()
    owner = DeviceToken.customer_id == customer_id if customer_id is not None else DeviceToken.staff_id == staff_id
    async with sessions.begin() as session:
        session.add(
            DeviceToken(
                token_hash=hash_token(token),
                customer_id=customer_id,
                staff_id=staff_id,
                created_at=now,
                expires_at=now + lifetime,
            )
        )
        await session.flush()
        kept = select(DeviceToken.id).where(owner).order_by(DeviceToken.id.desc()).limit(keep)
        await session.execute(delete(DeviceToken).where(owner, DeviceToken.id.not_in(kept)))
    return token


async def find(
    sessions: SessionFactory, token: str | None, *, customer_id: int | None = None, staff_id: int | None = None
) -> str | None:
    """The stored hash of `token` when it is a live device token of this account; else None (untrusted)."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    token_hash = hash_token(token)
    owner = DeviceToken.customer_id == customer_id if customer_id is not None else DeviceToken.staff_id == staff_id
    async with sessions() as session:
        found = await session.scalar(
            select(DeviceToken.id).where(DeviceToken.token_hash == token_hash, owner, DeviceToken.expires_at > utcnow())
        )
    return token_hash if found is not None else None


async def renew(sessions: SessionFactory, token_hash: str, lifetime: timedelta) -> None:
    """A successful sign-in from a known device keeps its token for another lifetime."""
    async with sessions.begin() as session:
        await session.execute(
            update(DeviceToken).where(DeviceToken.token_hash == token_hash).values(expires_at=utcnow() + lifetime)
        )


async def unlock_link_customer(sessions: SessionFactory, link_token: str) -> Customer | None:
    """The customer of a live, unused unlock link (for its page's language); None for anything else."""
    if not link_token or len(link_token) > MAX_TOKEN_LENGTH:
        return None
    async with sessions() as session:
        return await session.scalar(
            select(Customer)
            .join(OneTimeToken, OneTimeToken.customer_id == Customer.id)
            .where(*_live_link(link_token, UNLOCK_LINK))
        )


async def redeem_unlock_link(
    sessions: SessionFactory, link_token: str, *, lifetime: timedelta, keep: int
) -> tuple[Customer, str] | None:
    """Use up an unlock link (one conditional UPDATE: a second use, even a concurrent one, finds it used)
    and issue a device token to the browser that redeemed it; None when the link is no live one."""
    if not link_token or len(link_token) > MAX_TOKEN_LENGTH:
        return None
    async with sessions.begin() as session:
        customer_id = await session.scalar(
            update(OneTimeToken)
            .where(*_live_link(link_token, UNLOCK_LINK), OneTimeToken.customer_id.is_not(None))
            .values(used_at=utcnow())
            .returning(OneTimeToken.customer_id)
        )
        customer = None if customer_id is None else await session.get(Customer, customer_id)
    if customer is None or customer.anonymized_at is not None:
        return None
    return customer, await issue(sessions, customer_id=customer.id, lifetime=lifetime, keep=keep)


async def staff_unlock_link_live(sessions: SessionFactory, link_token: str) -> bool:
    """Whether this is a live, unused staff unlock link of an enabled member (its page shows the button)."""
    if not link_token or len(link_token) > MAX_TOKEN_LENGTH:
        return False
    async with sessions() as session:
        found = await session.scalar(
            select(OneTimeToken.id)
            .join(Staff, OneTimeToken.staff_id == Staff.id)
            .where(*_live_link(link_token, STAFF_UNLOCK_LINK), Staff.disabled_at.is_(None))
        )
    return found is not None


async def redeem_staff_unlock_link(
    sessions: SessionFactory, link_token: str, *, lifetime: timedelta, keep: int
) -> tuple[int, str] | None:
    """Use up a staff unlock link (one conditional UPDATE, as `redeem_unlock_link`) and issue the member's
    device token to the browser that redeemed it: (staff id, device token), or None for no live link or a
    disabled member."""
    if not link_token or len(link_token) > MAX_TOKEN_LENGTH:
        return None
    enabled = select(Staff.id).where(Staff.disabled_at.is_(None))
    async with sessions.begin() as session:
        staff_id = await session.scalar(
            update(OneTimeToken)
            .where(*_live_link(link_token, STAFF_UNLOCK_LINK), OneTimeToken.staff_id.in_(enabled))
            .values(used_at=utcnow())
            .returning(OneTimeToken.staff_id)
        )
    if staff_id is None:
        return None
    return staff_id, await issue(sessions, staff_id=staff_id, lifetime=lifetime, keep=keep)


def _live_link(link_token: str, purpose: str) -> tuple[Any, ...]:
    return (
        OneTimeToken.token_hash == hash_token(link_token),
        OneTimeToken.purpose == purpose,
        OneTimeToken.used_at.is_(None),
        OneTimeToken.expires_at > utcnow(),
    )
