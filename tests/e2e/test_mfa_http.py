"""Multi-factor authentication over HTTP, Spryker's Glue contract: email and TOTP activation, X-MFA-Code on
protected requests, the Glue error codes, brute force stopped at three, TOTP replay, recovery codes, codes
dead at sign-out, and no code in any workflow history. Both databases, real Temporal and SMTP."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from conftest import Database, Stack, StackFactory, decoded_payload_texts
from prometheus_client import REGISTRY
from sqlalchemy import select, update
from test_backoffice_http import staff_key
from test_login_http import PASSWORD, login_body
from test_profile_http import profile, signed_in

from accounts import mfa_totp
from accounts.models import AuditEvent, Customer, DeviceToken, MfaMethod, MfaRecoveryCode, utcnow
from starter.mfa import code_workflow_id

pytestmark = pytest.mark.e2e

MISSING = {"status": 403, "code": "5900", "detail": "X-MFA-Code header is missing."}
INVALID = {"status": 403, "code": "5901", "detail": "X-MFA-Code is invalid."}
TYPE_MISSING = {"status": 400, "code": "5902", "detail": "Multi-factor authentication type is missing."}
ALREADY = {"status": 400, "code": "5904", "detail": "Multi-factor authentication type already activated."}
NOT_FOUND = {"status": 400, "code": "5906", "detail": "Multi-factor authentication type is not found."}
NOT_FOUND_FOR_USER = {
    "status": 400,
    "code": "5906",
    "detail": "Multi-factor authentication type is not found for the current user.",
}


@pytest_asyncio.fixture
async def e2e(stack: StackFactory, dev_server: Any, database: Database) -> AsyncIterator[Stack]:
    async with stack(dev_server, database, api=True, mfa_code_resend_min_interval=timedelta(0)) as built:
        yield built


def body(resource: str, kind: str | None = "email", password: str | None = None) -> dict[str, Any]:
    attributes = {} if kind is None else {"type": kind}
    if password is not None:  # the activation's extension: the method's codes then prove who the customer is
        attributes["password"] = password
    return {"data": {"type": resource, "attributes": attributes}}


async def post(
    http: httpx.AsyncClient,
    resource: str,
    bearer: dict[str, str],
    kind: str | None = "email",
    code: str | None = None,
    password: str | None = None,
) -> httpx.Response:
    headers = {**bearer, **({"X-MFA-Code": code} if code is not None else {})}
    return await http.post(f"/{resource}", json=body(resource, kind, password), headers=headers)


class Codes:
    """The codes emailed to one address, each read once, in the order they arrive."""

    def __init__(self, stack: Stack, email: str) -> None:
        self.stack, self.email, self.seen = stack, email, 0

    async def next(self) -> str:
        wanted = self.seen

        def nth(message: Any) -> bool:
            mine = [m for m in self.stack.sink.to(self.email) if "security code" in m.subject.lower()]
            return len(mine) > wanted and message is mine[wanted]

        message = await self.stack.sink.wait_for(nth, timeout=20)
        self.seen += 1
        found = re.search(r"\b(\d{6})\b", message.text)
        assert found, message.text
        return found.group(1)


async def statuses(http: httpx.AsyncClient, bearer: dict[str, str]) -> dict[str, str]:
    answer = await http.get("/multi-factor-auth-types", headers=bearer)
    assert answer.status_code == 200, answer.text
    return {entry["id"]: entry["attributes"]["status"] for entry in answer.json()["data"]}


async def email_activated(stack: Stack, http: httpx.AsyncClient) -> tuple[str, str, dict[str, str], Codes]:
    email, reference, bearer = await signed_in(stack, http)
    codes = Codes(stack, email)
    assert (await post(http, "multi-factor-auth-type-activate", bearer)).status_code == 204
    answer = await post(http, "multi-factor-auth-type-verify", bearer, code=await codes.next())
    assert answer.status_code == 204, answer.text
    return email, reference, bearer, codes


async def events(stack: Stack, reference: str) -> list[str]:
    async with stack.database.sessions() as session:
        rows = await session.scalars(
            select(AuditEvent.event)
            .where(AuditEvent.customer_reference == reference, AuditEvent.event.like("mfa_%"))
            .order_by(AuditEvent.id)
        )
        return list(rows)


async def test_email_activation_and_a_protected_request(e2e: Stack) -> None:
    async with e2e.http() as http:
        email, reference, bearer = await signed_in(e2e, http)
        assert await statuses(http, bearer) == {"email": "deactivated", "totp": "deactivated"}
        listing = (await http.get("/multi-factor-auth-types", headers=bearer)).json()["data"][0]
        assert listing["type"] == "multi-factor-auth-types" and listing["attributes"] == {
            "type": "email",
            "status": "deactivated",
        }
        codes = Codes(e2e, email)
        assert (await post(http, "multi-factor-auth-type-activate", bearer)).status_code == 204
        assert (await statuses(http, bearer))["email"] == "activation is pending"
        code = await codes.next()
        assert (await post(http, "multi-factor-auth-type-verify", bearer)).json()["errors"] == [MISSING]
        wrong = "000000" if code != "000000" else "111111"
        assert (await post(http, "multi-factor-auth-type-verify", bearer, code=wrong)).json()["errors"] == [INVALID]
        assert (await post(http, "multi-factor-auth-type-verify", bearer, code=code)).status_code == 204
        assert (await statuses(http, bearer))["email"] == "activated"

        change = profile(firstName="Grace")
        patch = f"/customers/{reference}"
        assert (await http.patch(patch, json=change, headers=bearer)).json()["errors"] == [MISSING]
        assert (await http.get(patch, headers=bearer)).status_code == 200  # GET is never checked
        with_wrong = {**bearer, "X-MFA-Code": wrong}
        assert (await http.patch(patch, json=change, headers=with_wrong)).json()["errors"] == [INVALID]

        assert (await post(http, "multi-factor-auth-trigger", bearer)).status_code == 204
        code = await codes.next()
        with_code = {**bearer, "X-MFA-Code": code}
        changed = await http.patch(patch, json=change, headers=with_code)
        assert changed.status_code == 200, changed.text
        # a code works once (Spryker would take it again for 30 minutes)
        assert (await http.patch(patch, json=change, headers=with_code)).json()["errors"] == [INVALID]

        assert (await post(http, "multi-factor-auth-type-deactivate", bearer)).json()["errors"] == [MISSING]
        assert (await post(http, "multi-factor-auth-trigger", bearer)).status_code == 204
        code = await codes.next()
        assert (await post(http, "multi-factor-auth-type-deactivate", bearer, code=code)).status_code == 204
        assert (await statuses(http, bearer))["email"] == "deactivated"
        assert (await http.patch(patch, json=change, headers=bearer)).status_code == 200

    trail = await events(e2e, reference)
    assert trail[:3] == ["mfa_activation_started", "mfa_code_requested", "mfa_code_refused"]
    assert "mfa_activated" in trail and trail[-1] == "mfa_deactivated"
    assert trail.count("mfa_code_verified") == 2


async def test_the_glue_error_codes(e2e: Stack) -> None:
    async with e2e.http() as http:
        _, _, bearer = await signed_in(e2e, http)
        for resource in ("multi-factor-auth-type-activate", "multi-factor-auth-trigger"):
            assert (await post(http, resource, bearer, kind=None)).json()["errors"] == [TYPE_MISSING]
            assert (await post(http, resource, bearer, kind="carrier-pigeon")).json()["errors"] == [NOT_FOUND]
        assert (await post(http, "multi-factor-auth-trigger", bearer)).json()["errors"] == [NOT_FOUND_FOR_USER]
        verify = await post(http, "multi-factor-auth-type-verify", bearer, code="123456")
        assert verify.json()["errors"] == [NOT_FOUND_FOR_USER]
        deactivate = await post(http, "multi-factor-auth-type-deactivate", bearer, code="123456")
        assert deactivate.json()["errors"] == [NOT_FOUND_FOR_USER]
        no_token = await http.post("/multi-factor-auth-trigger", json=body("multi-factor-auth-trigger"))
        assert (no_token.status_code, no_token.json()["errors"][0]["code"]) == (403, "002")
        wrong_type = await http.post("/multi-factor-auth-trigger", json=body("carts"), headers=bearer)
        assert wrong_type.json()["errors"] == [{"status": 400, "detail": "Invalid type."}]

    async with e2e.http() as http:
        _, _, bearer, _ = await email_activated(e2e, http)
        assert (await post(http, "multi-factor-auth-type-activate", bearer)).json()["errors"] == [ALREADY]
        assert (await post(http, "multi-factor-auth-type-verify", bearer, code="1")).json()["errors"] == [ALREADY]
        # a second type needs a code of the first
        second = await post(http, "multi-factor-auth-type-activate", bearer, kind="totp")
        assert second.json()["errors"] == [MISSING]


async def test_brute_force_of_an_emailed_code_stops_at_three_attempts(e2e: Stack) -> None:
    async with e2e.http() as http:
        email, _, bearer = await signed_in(e2e, http)
        codes = Codes(e2e, email)
        assert (await post(http, "multi-factor-auth-type-activate", bearer)).status_code == 204
        code = await codes.next()
        guesses = [f"{n:06d}" for n in range(4) if f"{n:06d}" != code][:3]
        for guess in guesses:
            answer = await post(http, "multi-factor-auth-type-verify", bearer, code=guess)
            assert answer.json()["errors"] == [INVALID]
        # the fourth try, with the right code, is refused: the code died after three
        assert (await post(http, "multi-factor-auth-type-verify", bearer, code=code)).json()["errors"] == [INVALID]
        assert (await statuses(http, bearer))["email"] == "activation is pending"


async def test_sign_out_ends_the_codes_and_no_code_is_in_a_history(e2e: Stack) -> None:
    async with e2e.http() as http:
        email, reference, bearer, codes = await email_activated(e2e, http)
        assert (await post(http, "multi-factor-auth-trigger", bearer)).status_code == 204
        code = await codes.next()
        assert (await http.delete("/refresh-tokens/mine", headers=bearer)).status_code == 204
        # the signed-out session's access token is dead too (its sid); a new sign-in finds the code dead
        ended = await http.patch(f"/customers/{reference}", json=profile(firstName="Ada"), headers=bearer)
        assert ended.json()["errors"][0]["code"] == "001"
        signed = await http.post("/access-tokens", json=login_body(email, PASSWORD))
        assert signed.status_code == 201, signed.text
        again = {"Authorization": f"Bearer {signed.json()['data']['attributes']['accessToken']}"}
        answer = await http.patch(
            f"/customers/{reference}", json=profile(firstName="Ada"), headers={**again, "X-MFA-Code": code}
        )
        assert answer.json()["errors"] == [INVALID]

    async with e2e.database.sessions() as session:
        code_ids = list(await session.scalars(select(AuditEvent.details).where(
            AuditEvent.customer_reference == reference, AuditEvent.event == "mfa_code_requested"
        )))  # fmt: skip
    for details in code_ids:
        handle = e2e.client.get_workflow_handle(code_workflow_id(reference, details["codeId"]))
        await handle.result()
        texts = await decoded_payload_texts(e2e.client, await handle.fetch_history())
        assert texts and not any(code in text for text in texts)


async def test_totp_activation_replay_and_recovery_codes(e2e: Stack) -> None:
    async with e2e.http() as http:
        _, reference, bearer = await signed_in(e2e, http)
        started = await post(http, "multi-factor-auth-type-activate", bearer, kind="totp")
        assert started.status_code == 200, started.text
        assert started.headers["cache-control"] == "no-store"  # the secret and the recovery codes
        attributes = started.json()["data"]["attributes"]
        assert attributes["status"] == "activation is pending"
        assert attributes["qrCode"].startswith("data:image/svg+xml")
        assert attributes["otpauthUri"].startswith("otpauth://totp/")
        assert len(attributes["recoveryCodes"]) == 10
        secret = attributes["secret"]
        now = utcnow()
        first = mfa_totp.code_at(secret, now)
        assert (await post(http, "multi-factor-auth-type-verify", bearer, kind="totp", code=first)).status_code == 204
        assert (await statuses(http, bearer))["totp"] == "activated"

        patch = f"/customers/{reference}"
        change = profile(lastName="Hopper")
        replay = await http.patch(patch, json=change, headers={**bearer, "X-MFA-Code": first})
        assert replay.json()["errors"] == [INVALID]  # the step used at activation is spent
        following = mfa_totp.code_at(secret, now + timedelta(seconds=30))
        accepted = await http.patch(patch, json=change, headers={**bearer, "X-MFA-Code": following})
        assert accepted.status_code == 200, accepted.text

        recovery = attributes["recoveryCodes"][0]
        assert (await http.patch(patch, json=change, headers={**bearer, "X-MFA-Code": recovery})).status_code == 200
        again = await http.patch(patch, json=change, headers={**bearer, "X-MFA-Code": recovery})
        assert again.json()["errors"] == [INVALID]
        # a lost phone: a recovery code removes TOTP
        removed = await post(
            http, "multi-factor-auth-type-deactivate", bearer, kind="totp", code=attributes["recoveryCodes"][1]
        )
        assert removed.status_code == 204
        assert (await statuses(http, bearer))["totp"] == "deactivated"
    assert "mfa_activated" in await events(e2e, reference)


async def test_sign_in_needs_the_code_when_the_setting_says_so(
    stack: StackFactory, dev_server: Any, database: Database
) -> None:
    overrides = {"mfa_code_resend_min_interval": timedelta(0), "mfa_at_sign_in": True}
    async with stack(dev_server, database, api=True, **overrides) as e2e, e2e.http() as http:
        email, _, _, codes = await email_activated(e2e, http)
        refusals = REGISTRY.get_sample_value("accounts_sign_ins_total", {"outcome": "second_factor_refused"}) or 0
        without = await sign_in(http, email)
        assert (without.status_code, without.json()["errors"]) == (403, [MISSING])
        # counted as its own outcome (the API runs in this process here)
        after = REGISTRY.get_sample_value("accounts_sign_ins_total", {"outcome": "second_factor_refused"})
        assert after == refusals + 1
        code = await codes.next()  # the refused sign-in sent one
        wrong = "000000" if code != "000000" else "111111"
        refused = await sign_in(http, email, code=wrong)
        assert (refused.status_code, refused.json()["errors"]) == (403, [INVALID])
        signed = await sign_in(http, email, code=code)
        assert signed.status_code == 201, signed.text
        assert (await sign_in(http, email, code=code)).json()["errors"] == [INVALID]  # used

        assert (await sign_in(http, email)).status_code == 403
        oauth = {"grant_type": "password", "username": email, "password": PASSWORD}
        token = await http.post("/token", data=oauth, headers={"X-MFA-Code": await codes.next()})
        assert token.status_code == 200, token.text
        no_code = await http.post("/token", data=oauth)
        assert (no_code.status_code, no_code.json()["error"]) == (400, "invalid_grant")
        await codes.next()  # the refused /token sent one too
        # a wrong password answers as always, and sends no code
        before = len(e2e.sink.to(email))
        assert (await sign_in(http, email, password="Wrong-password-1")).json()["errors"][0]["code"] == "003"
        assert len(e2e.sink.to(email)) == before


async def sign_in(
    http: httpx.AsyncClient, email: str, *, code: str | None = None, password: str = PASSWORD
) -> httpx.Response:
    headers = {"X-MFA-Code": code} if code else {}
    return await http.post("/access-tokens", json=login_body(email, password), headers=headers)


async def test_support_sees_and_removes_mfa_and_the_customer_is_told(e2e: Stack) -> None:
    key = await staff_key(e2e, "sam", role="support")
    staff = {"Authorization": f"Bearer {key}"}
    async with e2e.http() as http:
        email, reference, bearer, _ = await email_activated(e2e, http)
        page = await http.get(f"/backoffice/customers/{reference}", headers=staff)
        assert page.json()["data"]["attributes"]["mfa"] == [{"type": "email", "status": "activated"}]
        blank = await http.post(f"/backoffice/customers/{reference}/mfa/remove", json={"reason": " "}, headers=staff)
        assert blank.status_code == 422, blank.text
        removed = await http.post(
            f"/backoffice/customers/{reference}/mfa/remove", json={"reason": "lost phone, ID checked"}, headers=staff
        )
        assert removed.status_code == 204, removed.text
        told = await e2e.mail_to(email, "two-step sign-in was removed")
        assert "email" in told.text
        assert (await statuses(http, bearer))["email"] == "deactivated"
        assert (await http.get(f"/backoffice/customers/{reference}", headers=staff)).json()["data"]["attributes"][
            "mfa"
        ] == []
        again = await http.post(
            f"/backoffice/customers/{reference}/mfa/remove", json={"reason": "twice"}, headers=staff
        )
        assert again.status_code == 409
    async with e2e.database.sessions() as session:
        rows = list(
            await session.scalars(
                select(AuditEvent).where(AuditEvent.customer_reference == reference, AuditEvent.channel == "backoffice")
            )
        )
    assert [(row.event, row.actor) for row in rows] == [
        ("mfa_deactivated", rows[0].actor),
        ("mfa_removed_by_support", rows[0].actor),
    ]
    assert rows[0].actor.startswith("sam-")
    assert rows[1].details == {"types": ["email"], "reason": "lost phone, ID checked"}


async def test_deleting_the_account_needs_the_code_and_removes_the_second_factor(e2e: Stack) -> None:
    async with e2e.http() as http:
        _, reference, bearer = await signed_in(e2e, http)
        wrong = await post(http, "multi-factor-auth-type-activate", bearer, kind="totp", password="not it at all 1!")
        assert (wrong.status_code, wrong.json()["errors"][0]["code"]) == (400, "408")  # counted as a failed sign-in
        assert (await statuses(http, bearer))["totp"] == "deactivated"
        started = await post(http, "multi-factor-auth-type-activate", bearer, kind="totp", password=PASSWORD)
        secret = started.json()["data"]["attributes"]["secret"]
        now = utcnow()
        code = mfa_totp.code_at(secret, now)
        assert (await post(http, "multi-factor-auth-type-verify", bearer, kind="totp", code=code)).status_code == 204
        assert (await http.delete(f"/customers/{reference}", headers=bearer)).json()["errors"] == [MISSING]
        later = mfa_totp.code_at(secret, now + timedelta(seconds=30))
        deleted = await http.delete(f"/customers/{reference}", headers={**bearer, "X-MFA-Code": later})
        assert deleted.status_code == 204, deleted.text
    async with e2e.database.sessions() as session:
        customer_id = await session.scalar(select(Customer.id).where(Customer.customer_reference == reference))
        for table in (MfaMethod, MfaRecoveryCode):
            assert (await session.scalars(select(table).where(table.customer_id == customer_id))).first() is None


async def test_the_default_protected_requests(e2e: Stack) -> None:
    async with e2e.http() as http:
        _, reference, bearer, codes = await email_activated(e2e, http)
        password = {
            "data": {
                "type": "customer-password",
                "attributes": {"password": PASSWORD, "newPassword": "Qz7#long-harbor-lamp", "confirmPassword": "x"},
            }
        }
        changed = await http.patch(f"/customer-password/{reference}", json=password, headers=bearer)
        assert changed.json()["errors"] == [MISSING]
        address = {"data": {"type": "addresses", "attributes": {"firstName": "Ada"}}}
        added = await http.post(f"/customers/{reference}/addresses", json=address, headers=bearer)
        assert added.json()["errors"] == [MISSING]
        assert (await http.get(f"/customers/{reference}/addresses", headers=bearer)).status_code == 200
        # this service's own: a copy of everything it holds on the customer
        exported = await http.post(f"/customers/{reference}/data-exports", headers=bearer)
        assert exported.json()["errors"] == [MISSING]
        assert (await http.get(f"/customers/{reference}/data-exports", headers=bearer)).json()["data"] == []
        # (customers' carts are read-only here: no POST/PATCH/DELETE /carts to protect yet)
        # with a code the request reaches its own rules (here: the schema of the address)
        assert (await post(http, "multi-factor-auth-trigger", bearer)).status_code == 204
        headers = {**bearer, "X-MFA-Code": await codes.next()}
        reached = await http.post(f"/customers/{reference}/addresses", json=address, headers=headers)
        assert reached.status_code == 422 and reached.json()["errors"][0]["code"] == "901"


async def test_a_second_factor_code_is_the_re_authentication_of_an_email_change(
    stack: StackFactory, dev_server: Any, database: Database
) -> None:
    """Issue 16: a new email needs the current password, or an MFA code when the customer has MFA. With
    `customers` off the protected list, the re-authentication itself checks (and spends) the code."""
    async with stack(dev_server, database, api=True, mfa_protected_requests=["customer-password"]) as built:
        async with built.http() as http:
            _, reference, bearer = await signed_in(built, http)
            started = await post(http, "multi-factor-auth-type-activate", bearer, kind="totp", password=PASSWORD)
            secret = started.json()["data"]["attributes"]["secret"]
            now = utcnow()
            verified = await post(http, "multi-factor-auth-type-verify", bearer, kind="totp",
                                  code=mfa_totp.code_at(secret, now))  # fmt: skip
            assert verified.status_code == 204, verified.text
            moved = {"data": {"type": "customers", "attributes": {"email": f"moved-{reference.lower()}@example.com"}}}
            url = f"/customers/{reference}"
            # neither proof: Glue's blank password; a wrong code: Spryker's invalid code, nothing changed
            assert (await http.patch(url, json=moved, headers=bearer)).json()["errors"][0]["code"] == "901"
            wrong = await http.patch(url, json=moved, headers={**bearer, "X-MFA-Code": "000000"})
            assert (wrong.status_code, wrong.json()["errors"]) == (403, [INVALID])
            code = mfa_totp.code_at(secret, now + timedelta(seconds=30))
            answer = await http.patch(url, json=moved, headers={**bearer, "X-MFA-Code": code})
            assert answer.status_code == 200, answer.text
            # the code was spent: the same time step again is a replay
            again = await http.patch(url, json=moved, headers={**bearer, "X-MFA-Code": code})
            assert (again.status_code, again.json()["errors"]) == (403, [INVALID])


async def test_the_customer_is_told_when_a_second_factor_is_turned_on(e2e: Stack) -> None:
    """A stolen token that enrols its own authenticator app does not go unnoticed: each activation is
    emailed (type, when, the reset link), once, and a wrong code or a mere start sends nothing of it."""
    async with e2e.http() as http:
        email, _, bearer = await signed_in(e2e, http)
        started = await post(http, "multi-factor-auth-type-activate", bearer, kind="totp")
        secret = started.json()["data"]["attributes"]["secret"]
        code = mfa_totp.code_at(secret, utcnow())
        wrong = "000000" if code != "000000" else "111111"
        assert (await post(http, "multi-factor-auth-type-verify", bearer, kind="totp", code=wrong)).status_code == 403
        assert (await post(http, "multi-factor-auth-type-verify", bearer, kind="totp", code=code)).status_code == 204
        told = await e2e.mail_to(email, "two-step sign-in was turned on")
        assert "(totp)" in told.text
        assert any(link.endswith("/password/forgotten") for link in told.links), told.links
        assert "customer support" in told.text

        codes = Codes(e2e, email)  # a second type needs a code of the first (TOTP), then its own
        with_totp = mfa_totp.code_at(secret, utcnow() + timedelta(seconds=30))
        assert (await post(http, "multi-factor-auth-type-activate", bearer, code=with_totp)).status_code == 204
        assert (await post(http, "multi-factor-auth-type-verify", bearer, code=await codes.next())).status_code == 204
        second = await e2e.sink.wait_for(
            lambda m: "turned on" in m.subject and "(email)" in m.text and email.lower() in m.to, timeout=15
        )
        assert second.subject == told.subject
    turned_on = [m for m in e2e.sink.to(email) if "turned on" in m.subject]
    assert len(turned_on) == 2


async def test_a_sign_in_the_second_factor_refuses_leaves_no_device_known(
    stack: StackFactory, dev_server: Any, database: Database
) -> None:
    """With ACCOUNTS_MFA_AT_SIGN_IN, the right password without the right code issues no device token and
    renews none: a stolen password alone never makes a device known (whose attempts would be counted on
    it alone, outside the account's lockout budget)."""
    overrides = {"mfa_code_resend_min_interval": timedelta(0), "mfa_at_sign_in": True}
    async with stack(dev_server, database, api=True, **overrides) as e2e, e2e.http() as http:
        email, reference, _, codes = await email_activated(e2e, http)
        customer_id = await _id(e2e, reference)
        known = await device_rows(e2e, customer_id)

        without = await sign_in(http, email)
        assert without.status_code == 403 and "X-Device-Token" not in without.headers
        code = await codes.next()
        wrong = "000000" if code != "000000" else "111111"
        refused = await sign_in(http, email, code=wrong)
        assert refused.status_code == 403 and "X-Device-Token" not in refused.headers
        oauth = {"grant_type": "password", "username": email, "password": PASSWORD}
        assert (await http.post("/token", data=oauth)).status_code == 400
        code = await codes.next()  # the refused /token sent one (the newest is the one that works)
        assert await device_rows(e2e, customer_id) == known  # none issued, none renewed

        signed = await sign_in(http, email, code=code)
        assert signed.status_code == 201, signed.text
        device = signed.headers["X-Device-Token"]
        after = await device_rows(e2e, customer_id)
        assert len(after) == len(known) + 1

        # a known device with a wrong code: its token is not renewed either (a right one would renew it)
        async with e2e.database.sessions.begin() as session:
            await session.execute(
                update(DeviceToken)
                .where(DeviceToken.customer_id == customer_id)
                .values(expires_at=utcnow() + timedelta(days=1))
            )
        stale = await device_rows(e2e, customer_id)
        headers = {"X-MFA-Code": wrong, "X-Device-Token": device}
        refused = await http.post("/access-tokens", json=login_body(email, PASSWORD), headers=headers)
        assert refused.status_code == 403
        assert await device_rows(e2e, customer_id) == stale


async def _id(stack: Stack, reference: str) -> int:
    async with stack.database.sessions() as session:
        found = await session.scalar(select(Customer.id).where(Customer.customer_reference == reference))
    assert found is not None
    return found


async def device_rows(stack: Stack, customer_id: int) -> list[tuple[str, Any]]:
    async with stack.database.sessions() as session:
        rows = await session.execute(
            select(DeviceToken.token_hash, DeviceToken.expires_at)
            .where(DeviceToken.customer_id == customer_id)
            .order_by(DeviceToken.id)
        )
        return [(h, e) for h, e in rows]
