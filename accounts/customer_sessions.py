"""Where a customer is signed in: one session per sign-in (a refresh-token family), with its device.

A sign-in records its session in the transaction that issues the family's first refresh token (so the
customer row lock of `RefreshTokenStore.issue` orders racing sign-ins): the device as a readable name
("Firefox on Windows", parsed with ua-parser, whose rules ship in the package), the client's network
prefix (/24 of IPv4, /48 of IPv6; never the address), and the device token the sign-in presented or was
given (accounts/device_tokens.py). A refresh moves `last_used_at`; requests do not.

A session is live while its family has a live refresh token. Ending one revokes the family, and the
access tokens of that sign-in die with it: they carry the family as `sid`, and api/auth.py refuses a
`sid` whose family has no live token, in the query that reads the customer. Ending every session ("this
wasn't me") revokes every family and bumps `token_version`, which kills access tokens without `sid` too.

A new device is one the customer has not signed in from: a device token that none of this customer's
sessions had (unknown, another account's; an expired or pruned token of theirs is still their device), or
without a token a (device name, network prefix) pair none of the customer's sessions had. The account's
first session is no new device (that is the sign-up).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import ua_parser
from sqlalchemy import delete, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from accounts import audit
from accounts.db import SessionFactory
from accounts.models import Customer, CustomerSession, OneTimeToken, utcnow
from accounts.refresh_tokens import RefreshToken
from accounts.tokens import hash_token

NOT_ME_LINK = "not_me"  # one_time_tokens.purpose of the new-device email's "this wasn't me" link
NOT_ME_PATH = "/account/not-me"  # its storefront page (api/routes/not_me.py)
MAX_TOKEN_LENGTH = 128
MAX_USER_AGENT = 1024  # longer headers are cut before parsing: the rules are regular expressions
UNKNOWN_DEVICE = "Unknown device"


def device_name(user_agent: str | None) -> str:
    """A user agent as people name it: "Firefox on Windows", "Mobile Safari on iOS", "Unknown device"."""
    if not user_agent:
        return UNKNOWN_DEVICE
    parsed = ua_parser.parse(user_agent[:MAX_USER_AGENT])
    browser = parsed.user_agent.family if parsed.user_agent and parsed.user_agent.family != "Other" else None
    system = parsed.os.family if parsed.os and parsed.os.family != "Other" else None
    if browser and system:
        name = f"{browser} on {system}"
    else:
        name = browser or system or UNKNOWN_DEVICE
    return name[:100]


def warm_up() -> None:
    """The parser compiles its rules on first use (a fifth of a second): the API does it at start."""
    device_name("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0")


def network_prefix(client: str) -> str | None:
    """The client's network, coarse enough to say "roughly where": 203.0.113.0/24, 2001:db8:1::/48.
    `client` is an address or a network (api/client_address.py names IPv6 clients by their /64)."""
    try:
        network = ipaddress.ip_network(client, strict=False)
    except ValueError:
        return None
    if isinstance(network, ipaddress.IPv6Network) and network.network_address.ipv4_mapped is not None:
        network = ipaddress.ip_network(f"{network.network_address.ipv4_mapped}/32")
    bits = 24 if network.version == 4 else 48
    return str(network.supernet(new_prefix=bits)) if network.prefixlen > bits else str(network)


@dataclass(frozen=True)
class SignInDevice:
    """What a sign-in knows of the client that made it."""

    name: str
    network_prefix: str | None
    device_token_hash: str | None  # the token the client will present next time, hashed
    known_token: bool  # it presented a live device token of this customer
    presented_token_hash: str | None = None  # the token it presented (live or not, anyone's), hashed


def family_live(family_id: Any, now: datetime) -> ColumnElement[bool]:
    """Whether the family (a column or a value) still has a live refresh token."""
    return exists().where(
        RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None), RefreshToken.expires_at > now
    )


async def record(
    session: AsyncSession, *, customer_id: int, family_id: str, device: SignInDevice, now: datetime
) -> bool:
    """Record a sign-in's session (in the transaction that issues its family); True when it came from a
    new device (see the module docstring), which the customer is told about."""
    mine = CustomerSession.customer_id == customer_id
    if device.known_token:
        new = False
    else:  # one statement: has the customer any session, and one of this device?
        if device.presented_token_hash is not None:  # expired or pruned since, yet one of this customer's devices
            same = CustomerSession.device_token_hash == device.presented_token_hash
        else:
            same = (CustomerSession.device == device.name) & _same_prefix(device.network_prefix)
        row = (await session.execute(select(exists().where(mine), exists().where(mine, same)))).one()
        new = bool(row[0]) and not row[1]  # the account's first session is no new device
    session.add(
        CustomerSession(
            family_id=family_id,
            customer_id=customer_id,
            device=device.name,
            network_prefix=device.network_prefix,
            device_token_hash=device.device_token_hash,
            created_at=now,
            last_used_at=now,
        )
    )
    return new


def _same_prefix(prefix: str | None) -> ColumnElement[bool]:
    column = CustomerSession.network_prefix
    return column.is_(None) if prefix is None else column == prefix


async def live_sessions(
    session: AsyncSession, customer_id: int, *, now: datetime | None = None
) -> list[CustomerSession]:
    """The customer's live sessions, the most recently used first."""
    now = now or utcnow()
    rows = await session.scalars(
        select(CustomerSession)
        .where(CustomerSession.customer_id == customer_id, family_live(CustomerSession.family_id, now))
        .order_by(CustomerSession.last_used_at.desc(), CustomerSession.created_at.desc())
    )
    return list(rows)


async def find(session: AsyncSession, customer_id: int, family_id: str) -> CustomerSession | None:
    """One live session of the customer; None for another customer's, an ended or an unknown one."""
    if len(family_id) > 32:
        return None
    return await session.scalar(
        select(CustomerSession).where(
            CustomerSession.family_id == family_id,
            CustomerSession.customer_id == customer_id,
            family_live(CustomerSession.family_id, utcnow()),
        )
    )


async def end(session: AsyncSession, customer_id: int, family_id: str) -> bool:
    """End one live session of the customer (its refresh family; its access tokens die with it in
    api/auth.py). False when it is no live session of this customer."""
    found = await find(session, customer_id, family_id)
    if found is None:
        return False
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow()),
        execution_options={"synchronize_session": False},
    )
    return True


async def end_all(session: AsyncSession, customer: Customer) -> None:
    """Every session ends: each refresh family, and (by the token version) every access token."""
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.customer_id == customer.id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow()),
        execution_options={"synchronize_session": False},
    )
    customer.token_version += 1


async def delete_forgotten_batch(sessions: SessionFactory, *, kept_for: timedelta, batch: int) -> int:
    """Forget ended sessions unused for `kept_for` (the throttle-cleanup schedule): their device and network
    prefix are personal data, kept only as long as a device counts as seen."""
    cutoff = utcnow() - kept_for
    async with sessions.begin() as session:
        forgotten = (
            select(CustomerSession.family_id)
            .where(CustomerSession.last_used_at < cutoff, ~family_live(CustomerSession.family_id, utcnow()))
            .limit(batch)
        )
        result = await session.execute(
            delete(CustomerSession).where(CustomerSession.family_id.in_(forgotten.scalar_subquery()))
        )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# --- "this wasn't me" ------------------------------------------------------------------------------------


def _live_link(link_token: str) -> tuple[ColumnElement[bool], ...]:
    return (
        OneTimeToken.token_hash == hash_token(link_token),
        OneTimeToken.purpose == NOT_ME_LINK,
        OneTimeToken.used_at.is_(None),
        OneTimeToken.expires_at > utcnow(),
    )


async def not_me_link_customer(sessions: SessionFactory, link_token: str) -> Customer | None:
    """The customer of a live, unused "this wasn't me" link (its page speaks their language)."""
    if not link_token or len(link_token) > MAX_TOKEN_LENGTH:
        return None
    async with sessions() as session:
        return await session.scalar(
            select(Customer).join(OneTimeToken, OneTimeToken.customer_id == Customer.id).where(*_live_link(link_token))
        )


async def redeem_not_me_link(sessions: SessionFactory, link_token: str) -> Customer | None:
    """Use up the link (one conditional UPDATE: a second use finds it used), end every session of its
    customer and stop the password working (password_reset_required: whoever signed in knows it, so
    sign-in answers 401 426 until a reset), with an audit event, in one transaction; None when the link
    is no live one."""
    if not link_token or len(link_token) > MAX_TOKEN_LENGTH:
        return None
    async with sessions.begin() as session:
        customer_id = await session.scalar(
            update(OneTimeToken)
            .where(*_live_link(link_token))
            .values(used_at=utcnow())
            .returning(OneTimeToken.customer_id)
        )
        if customer_id is None:
            return None
        customer = await session.scalar(select(Customer).where(Customer.id == customer_id).with_for_update())
        if customer is None or customer.anonymized_at is not None:
            return None
        await end_all(session, customer)
        customer.password_reset_required = True  # as the email change's undo: a reset clears it
        customer.updated_at = utcnow()
        audit.record(
            session,
            customer_reference=customer.customer_reference,
            event="sessions_ended",
            channel="email",
            actor="customer",
            details={"reason": "not_me"},
        )
    return customer
