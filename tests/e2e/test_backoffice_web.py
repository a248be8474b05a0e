"""The back-office web UI over HTTP (no browser): sign-in, session cookie, CSRF, role checks, flash messages."""

from __future__ import annotations

import asyncio
import html
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from conftest import ACCOUNTS, Database, Stack, StackFactory, checkout_env
from sqlalchemy import select, update
from starlette.requests import Request
from starlette.responses import Response
from test_backoffice_http import staff_key
from test_login_http import registered, sign_in

from accounts.models import AuditEvent, Customer, Staff, utcnow
from accounts.passwords import PasswordHasher
from accounts.settings import DEVELOPMENT_SECRET
from accounts.staff import PasswordChecked, StaffDirectory, StaffNotFound, StaffPasswordRejected
from api.routes.agents import revocation_version
from api.web.session import SESSION_COOKIE, SessionCodec, WebSession
from backoffice import BackOffice, cli_staff

pytestmark = pytest.mark.e2e
STAFF_PASSWORD = "Orchard-lamp-51#drift"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]*)"')
SIGN_IN_FAILED = "Unknown staff name or wrong password."


@pytest_asyncio.fixture
async def e2e(stack: StackFactory, dev_server: Any, database: Database) -> AsyncIterator[Stack]:
    async with stack(dev_server, database, api=True, lockout_max_failures=3) as built:
        yield built


async def staff_with_password(stack: Stack, role: str = "support", name: str = "sam") -> tuple[str, str]:
    directory = StaffDirectory.from_settings(stack.database.sessions, stack.settings)
    member, _ = await directory.create(f"{name}-{os.urandom(4).hex()}", role, password=STAFF_PASSWORD)
    return member.name, STAFF_PASSWORD


def csrf_token(page: httpx.Response) -> str:
    found = CSRF_FIELD.search(page.text)
    assert found is not None and found[1], page.text
    return found[1]


async def web_sign_in(http: httpx.AsyncClient, name: str, password: str) -> httpx.Response:
    form = await http.get("/backoffice/sign-in")
    assert form.status_code == 200
    return await http.post(
        "/backoffice/sign-in",
        data={"name": name, "password": password, "csrf_token": csrf_token(form), "next": "/backoffice"},
    )


def flash(page: httpx.Response) -> str:
    found = re.search(r'<div class="flash (\w+)" role="\w+">([^<]*)</div>', page.text)
    assert found is not None, page.text
    return f"{found[1]}: {html.unescape(found[2])}"


async def customer_row(stack: Stack, reference: str) -> Customer:
    async with stack.database.sessions() as session:
        customer = await session.scalar(select(Customer).where(Customer.customer_reference == reference))
        assert customer is not None
        return customer


async def events_of(stack: Stack, reference: str, event: str) -> list[AuditEvent]:
    async with stack.database.sessions() as session:
        rows = await session.scalars(
            select(AuditEvent).where(AuditEvent.customer_reference == reference, AuditEvent.event == event)
        )
        return list(rows)


async def test_every_page_and_form_needs_a_session(e2e: Stack) -> None:
    async with e2e.http() as http:
        _, reference = await registered(e2e, http, confirm=False)
        customer = f"/backoffice/ui/customers/{reference}"
        listing = await http.get("/backoffice?status=unverified")
        detail = await http.get(customer)
        posted = await http.post(f"{customer}/verify", data={"reason": "no session", "csrf_token": "x"})
    assert (listing.status_code, listing.headers["location"]) == (
        303,
        "/backoffice/sign-in?next=%2Fbackoffice%3Fstatus%3Dunverified",
    )
    back_to_detail = f"/backoffice/sign-in?next=%2Fbackoffice%2Fui%2Fcustomers%2F{reference}"
    assert (detail.status_code, detail.headers["location"]) == (303, back_to_detail)
    assert (posted.status_code, posted.headers["location"]) == (303, "/backoffice/sign-in")
    assert (await customer_row(e2e, reference)).registered_at is None


async def test_sign_in_answers_alike_for_unknown_names_and_wrong_passwords_and_sets_a_strict_cookie(
    e2e: Stack,
) -> None:
    name, password = await staff_with_password(e2e)
    async with e2e.http() as http:
        unknown = await web_sign_in(http, f"nobody-{os.urandom(4).hex()}", password)
        wrong = await web_sign_in(http, name, "not-the-password-at-all")
        assert (unknown.status_code, flash(unknown)) == (400, f"error: {SIGN_IN_FAILED}")
        assert (wrong.status_code, flash(wrong)) == (400, f"error: {SIGN_IN_FAILED}")
        assert "backoffice_session" not in http.cookies

        signed_in = await web_sign_in(http, name, password)
        assert (signed_in.status_code, signed_in.headers["location"]) == (303, "/backoffice")
        cookie = next(v for k, v in signed_in.headers.multi_items() if k == "set-cookie" and "backoffice_session" in v)
        assert all(part in cookie.lower() for part in ("httponly", "samesite=strict", "path=/backoffice", "max-age="))
        page = await http.get("/backoffice")
        assert page.status_code == 200 and f"{name} (support)" in page.text and "<h1>Customers</h1>" in page.text
        assert page.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]

        # a sign-in form whose token does not belong to this browser's form cookie is refused
        async with e2e.http() as other:
            forged = await other.post(
                "/backoffice/sign-in", data={"name": name, "password": password, "csrf_token": csrf_token(page)}
            )
        assert forged.status_code == 400 and "backoffice_session" not in forged.headers.get("set-cookie", "")

        # signing out needs the form's token too
        assert (await http.post("/backoffice/sign-out")).status_code == 403
        copied = http.cookies.get("backoffice_session", path="/backoffice")
        assert copied is not None
        out = await http.post("/backoffice/sign-out", data={"csrf_token": csrf_token(page)})
        assert (out.status_code, out.headers["location"]) == (303, "/backoffice/sign-in")
        assert (await http.get("/backoffice")).status_code == 303
        # a copy of the cookie taken before signing out is dead too (another browser, a stolen copy)
        async with httpx.AsyncClient(base_url=e2e.api_url or "", cookies={"backoffice_session": copied}) as other:
            assert (await other.get("/backoffice")).status_code == 303
        assert (await web_sign_in(http, name, password)).status_code == 303

        # a new password ends the session; so does disabling the member
        await StaffDirectory.from_settings(e2e.database.sessions, e2e.settings).set_password(
            name, "Another-orchard-62#drift"
        )
        assert (await http.get("/backoffice")).status_code == 303
        assert (await web_sign_in(http, name, "Another-orchard-62#drift")).status_code == 303
        assert (await http.get("/backoffice")).status_code == 200
        directory = StaffDirectory.from_settings(e2e.database.sessions, e2e.settings)
        await directory.set_disabled(name, True)
        assert (await http.get("/backoffice")).status_code == 303
        disabled = await web_sign_in(http, name, "Another-orchard-62#drift")
        assert (disabled.status_code, flash(disabled)) == (400, f"error: {SIGN_IN_FAILED}")
        # enabling the member again does not bring back the sessions the disabling ended
        await directory.set_disabled(name, False)
        assert (await http.get("/backoffice")).status_code == 303
        assert (await web_sign_in(http, name, "Another-orchard-62#drift")).status_code == 303


async def test_failed_sign_ins_are_throttled_per_name(e2e: Stack) -> None:
    name, password = await staff_with_password(e2e)
    async with e2e.http() as http:
        for _ in range(3):  # lockout_max_failures=3
            assert (await web_sign_in(http, name, "wrong-wrong-wrong")).status_code == 400
        blocked = await web_sign_in(http, name, password)
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
    assert flash(blocked).startswith("error: Too many failed sign-ins. Try again in")


async def test_a_form_without_the_session_csrf_token_is_refused_and_changes_nothing(e2e: Stack) -> None:
    name, password = await staff_with_password(e2e)
    async with e2e.http() as http, e2e.http() as other:
        _, reference = await registered(e2e, http, confirm=False)
        verify = f"/backoffice/ui/customers/{reference}/verify"
        assert (await web_sign_in(http, name, password)).status_code == 303
        assert (await web_sign_in(other, name, password)).status_code == 303
        detail = await http.get(f"/backoffice/ui/customers/{reference}")
        token = csrf_token(detail)
        foreign_token = csrf_token(await other.get("/backoffice"))

        missing = await http.post(verify, data={"reason": "ticket 1"})
        wrong = await http.post(verify, data={"reason": "ticket 1", "csrf_token": foreign_token})
        assert missing.status_code == 403 and wrong.status_code == 403 and "Form refused" in wrong.text
        assert (await customer_row(e2e, reference)).registered_at is None
        assert await events_of(e2e, reference, "verified_manually") == []

        done = await http.post(verify, data={"reason": "ticket 1", "csrf_token": token})
        assert (done.status_code, done.headers["location"]) == (303, f"/backoffice/ui/customers/{reference}")
        page = await http.get(done.headers["location"])
        assert flash(page) == f"success: {reference} is verified (by {name})."
        assert 'data-testid="customer-status">Verified<' in page.text
        [event] = await events_of(e2e, reference, "verified_manually")
        assert (event.actor, event.channel) == (name, "backoffice")
        assert "backoffice_flash" not in (await http.get(f"/backoffice/ui/customers/{reference}")).text

        again = await http.post(verify, data={"reason": "ticket 2", "csrf_token": token})
        refused = f"error: Nothing was done: not awaiting verification ({reference} is verified)."
        assert flash(await http.get(again.headers["location"])) == refused
        no_reason = await http.post(verify, data={"reason": "  ", "csrf_token": token})
        assert flash(await http.get(no_reason.headers["location"])).startswith("error: Nothing was done: the reason")


async def test_support_cannot_delete_and_admins_delete_after_a_confirmation(e2e: Stack) -> None:
    support, password = await staff_with_password(e2e, "support")
    admin, _ = await staff_with_password(e2e, "admin", name="ada")
    async with e2e.http() as http, e2e.http() as admin_http:
        email, reference = await registered(e2e, http)
        customer = f"/backoffice/ui/customers/{reference}"
        await web_sign_in(http, support, password)
        page = await http.get(customer)
        assert page.status_code == 200 and f"{customer}/delete" not in page.text and "needs the admin role" in page.text
        assert (await http.get(f"{customer}/delete")).status_code == 403
        refused = await http.post(f"{customer}/delete", data={"confirm": "yes", "csrf_token": csrf_token(page)})
        assert refused.status_code == 403 and "customers.delete" in refused.text
        assert (await customer_row(e2e, reference)).anonymized_at is None

        await web_sign_in(admin_http, admin, password)
        page = await admin_http.get(customer)
        assert f'action="{customer}/delete"' in page.text
        unconfirmed = await admin_http.post(f"{customer}/delete", data={"csrf_token": csrf_token(page)})
        assert "confirm the deletion" in flash(await admin_http.get(unconfirmed.headers["location"]))
        assert (await customer_row(e2e, reference)).anonymized_at is None
        confirm = await admin_http.get(f"{customer}/delete")
        assert confirm.status_code == 200 and email in confirm.text and "cannot be undone" in confirm.text
        confirmed = {"confirm": "yes", "csrf_token": csrf_token(confirm)}
        deleted = await admin_http.post(f"{customer}/delete", data=confirmed)
        after = await admin_http.get(deleted.headers["location"])
        assert flash(after) == f"success: {reference} is deleted: the personal data is anonymized."
        assert (await customer_row(e2e, reference)).anonymized_at is not None
        [event] = await events_of(e2e, reference, "customer_anonymized")
        assert (event.actor, event.channel) == (admin, "backoffice")


async def test_customer_tokens_and_staff_keys_do_not_replace_the_session_cookie(e2e: Stack) -> None:
    name, password = await staff_with_password(e2e)
    key = await staff_key(e2e, "kim")
    async with e2e.http() as http:
        email, reference = await registered(e2e, http)
        customer_token = (await sign_in(http, email)).json()["data"]["attributes"]["accessToken"]
        for headers, cookies in [
            ({"Authorization": f"Bearer {customer_token}"}, {}),
            ({"Authorization": f"Bearer {key}"}, {}),
            ({}, {"backoffice_session": key}),
            ({}, {"backoffice_session": customer_token}),
        ]:
            async with httpx.AsyncClient(base_url=e2e.api_url or "", headers=headers, cookies=cookies) as client:
                page = await client.get(f"/backoffice/ui/customers/{reference}")
                assert (page.status_code, page.headers["location"].split("?")[0]) == (303, "/backoffice/sign-in")
        # and the web session does not open the JSON API
        await web_sign_in(http, name, password)
        api = await http.post(f"/backoffice/customers/{reference}/unlock", json={"reason": "cookie only"})
        assert (api.status_code, api.json()["errors"][0]["code"]) == (403, "002")


async def test_list_filters_search_and_detail_sections(e2e: Stack) -> None:
    name, password = await staff_with_password(e2e)
    async with e2e.http() as http:
        verified_email, verified = await registered(e2e, http)
        _, unverified = await registered(e2e, http, confirm=False)
        await web_sign_in(http, name, password)
        unverified_only = await http.get("/backoffice", params={"status": "unverified"})
        statuses = set(re.findall(r'<span class="status (\w+)">', unverified_only.text))
        assert statuses == {"unverified"} and unverified in unverified_only.text
        found = await http.get("/backoffice", params={"q": verified_email.upper()})
        assert re.findall(r"/backoffice/ui/customers/([^\"]+)\"", found.text) == [verified]
        group = f"VIP {os.urandom(3).hex()}"
        backoffice = BackOffice(e2e.database.sessions, e2e.accounts, e2e.settings)
        await backoffice.create_group(group, None, cli_staff("test"))
        await backoffice.assign(unverified, group, cli_staff("test"))
        in_group = await http.get("/backoffice", params={"group": group, "sort": "email"})
        assert re.findall(r"/backoffice/ui/customers/([^\"]+)\"", in_group.text) == [unverified]
        assert f'<option value="{group}" selected>' in in_group.text
        assert 'href="/backoffice?group=' in in_group.text and "sort=-email" in in_group.text  # click again: descending
        bad = await http.get("/backoffice", params={"status": "sleeping"})
        assert bad.status_code == 400 and "status must be one of" in bad.text

        note = await http.post(
            f"/backoffice/ui/customers/{verified}/notes",
            data={"message": "Called about <b>order</b>", "csrf_token": csrf_token(found)},
        )
        page = await http.get(note.headers["location"])
        assert flash(page) == "success: Note added."
        assert "Called about &lt;b&gt;order&lt;/b&gt;" in page.text  # escaped, never markup
        assert f"/workflows/registration:{verified}/" in page.text  # the run in the Temporal UI
        assert "note added" in page.text and name in page.text  # the audit trail names the staff member
        missing = await http.get("/backoffice/ui/customers/DE--nobody")
        assert missing.status_code == 404 and "There is no customer DE--nobody." in missing.text


async def accounts_cli(stack: Stack, cwd: Path, *args: str, stdin: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *ACCOUNTS,
        *args,
        cwd=cwd,
        env=checkout_env({**os.environ, "ACCOUNTS_DATABASE_URL": stack.settings.database_url,
                          "ACCOUNTS_ARGON2_TIME_COST": "1", "ACCOUNTS_ARGON2_MEMORY_COST": "8192",
                          "ACCOUNTS_ARGON2_PARALLELISM": "1", "COLUMNS": "200"}),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(stdin.encode()), 60)
    assert process.returncode is not None
    return process.returncode, stdout.decode() + stderr.decode()  # what a terminal shows


async def test_cli_creates_staff_with_a_web_password_and_sets_new_ones(e2e: Stack, tmp_path: Path) -> None:
    name = f"cli-{os.urandom(3).hex()}"
    code, out = await accounts_cli(e2e, tmp_path, "staff", "create", name, "--role", "admin", "--password-stdin",
                                   stdin=f"{STAFF_PASSWORD}\n")  # fmt: skip
    assert code == 0 and out.strip().splitlines()[-1].startswith("stf_")
    weak, out = await accounts_cli(e2e, tmp_path, "staff", "set-password", name, "--password-stdin", stdin="short\n")
    assert weak == 1 and "password refused" in out and "too short" in out
    unknown, out = await accounts_cli(e2e, tmp_path, "staff", "set-password", "nobody-here", "--password-stdin",
                                      stdin=f"{STAFF_PASSWORD}\n")  # fmt: skip
    assert unknown == 1 and "no staff member named nobody-here" in out
    async with e2e.http() as http:
        assert (await web_sign_in(http, name, STAFF_PASSWORD)).status_code == 303
        assert (await http.get("/backoffice")).status_code == 200
        code, out = await accounts_cli(e2e, tmp_path, "staff", "set-password", name, "--password-stdin",
                                       stdin="Brand-new-lantern-88#\n")  # fmt: skip
        assert code == 0 and f"web password of {name} (admin) set" in out
        assert (await http.get("/backoffice")).status_code == 303  # the old session ended
        assert (await web_sign_in(http, name, STAFF_PASSWORD)).status_code == 400
        assert (await web_sign_in(http, name, "Brand-new-lantern-88#")).status_code == 303
    async with e2e.database.sessions() as session:
        stored = await session.scalar(select(Staff.password_hash).where(Staff.name == name))
    assert stored is not None and stored.startswith("$argon2id$") and "lantern" not in stored


class CountingHasher(PasswordHasher):
    """Counts argon2 verifications, real and dummy: each sign-in answer must cost the same."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1)
        self.verifications = 0

    def verify(self, password_hash: str, password: str) -> bool:
        self.verifications += 1
        return super().verify(password_hash, password)


async def test_every_password_check_costs_one_verification_and_only_enabled_members_pass(database: Database) -> None:
    hasher = CountingHasher()
    directory = StaffDirectory(database.sessions, hasher, key_secret=DEVELOPMENT_SECRET)
    with_password, _ = await directory.create(f"pat-{os.urandom(3).hex()}", "support", password=STAFF_PASSWORD)
    without_password, _ = await directory.create(f"max-{os.urandom(3).hex()}", "support")
    disabled, _ = await directory.create(f"ex-{os.urandom(3).hex()}", "admin", password=STAFF_PASSWORD)
    async with database.sessions.begin() as session:
        await session.execute(update(Staff).where(Staff.id == disabled.id).values(disabled_at=utcnow()))
    attempts = [
        (with_password.name, STAFF_PASSWORD, with_password),
        (with_password.name, STAFF_PASSWORD + "x", None),
        (without_password.name, STAFF_PASSWORD, None),
        (disabled.name, STAFF_PASSWORD, None),
        ("nobody-" + os.urandom(3).hex(), STAFF_PASSWORD, None),
    ]
    for name, password, expected in attempts:
        before = hasher.verifications
        checked = await directory.authenticate_password(name, password)
        assert (checked.member if checked is not None else None) == expected, name
        assert hasher.verifications == before + 1, name
    for weak in ("short", "password12345", with_password.name + "-2024!"):
        with pytest.raises(StaffPasswordRejected):
            await directory.set_password(with_password.name, weak)
    with pytest.raises(StaffPasswordRejected):
        await directory.create(f"weak-{os.urandom(3).hex()}", "support", password="password12345")
    with pytest.raises(StaffNotFound):
        await directory.set_password("nobody-" + os.urandom(3).hex(), STAFF_PASSWORD)
    checked = await directory.authenticate_password(with_password.name, STAFF_PASSWORD)
    assert checked is not None and checked.member == with_password


class RevokedWhileVerifying(PasswordHasher):
    """Runs `revoke` while it verifies a password, as an admin's new password or disable can land in the
    tenth of a second argon2 takes."""

    def __init__(self, revoke: Callable[[], Awaitable[object]]) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1)
        self.revoke = revoke

    async def verify_async(self, password_hash: str, password: str) -> bool:
        right = await super().verify_async(password_hash, password)
        await self.revoke()
        return right


@pytest.mark.parametrize("revocation", ["new password", "disabled and enabled again"])
async def test_a_revocation_while_the_password_is_verified_ends_what_that_sign_in_issues(
    e2e: Stack, revocation: str
) -> None:
    """The web session and the agent token of a sign-in count from when the member's row was read, before
    argon2: a revocation landing while it ran ends them (an attacker with the old password keeps nothing)."""
    sessions, settings = e2e.database.sessions, e2e.settings
    admin = StaffDirectory.from_settings(sessions, settings)
    name = f"rita-{os.urandom(3).hex()}"
    await admin.create(name, "agent", password=STAFF_PASSWORD)

    async def revoke() -> None:
        if revocation == "new password":
            await admin.set_password(name, STAFF_PASSWORD + "-new")
        else:
            await admin.set_disabled(name, True)
            await admin.set_disabled(name, False)

    codec = SessionCodec(settings)

    async def web_session_of(checked: PasswordChecked) -> WebSession | None:
        response = Response()
        await codec.start(response, sessions, checked)
        cookie = SimpleCookie(response.headers["set-cookie"])[SESSION_COOKIE].value
        scope = {"type": "http", "headers": [(b"cookie", f"{SESSION_COOKIE}={cookie}".encode())]}
        return await codec.read(Request(scope), sessions)

    async def last_revocation() -> int:
        async with sessions() as session:
            return revocation_version(await session.scalar(select(Staff.sessions_revoked_at).where(Staff.name == name)))

    racing = StaffDirectory(sessions, RevokedWhileVerifying(revoke), key_secret=DEVELOPMENT_SECRET)
    raced = await racing.authenticate_password(name, STAFF_PASSWORD)
    assert raced is not None  # the password was right when checked
    assert await web_session_of(raced) is None
    assert revocation_version(raced.sessions_revoked_at) != await last_revocation()  # its agent token: 4102
    # a sign-in after the revocation gets both
    password = STAFF_PASSWORD + "-new" if revocation == "new password" else STAFF_PASSWORD
    after = await admin.authenticate_password(name, password)
    assert after is not None
    session = await web_session_of(after)
    assert session is not None and session.member == after.member
    assert revocation_version(after.sessions_revoked_at) == await last_revocation()


async def test_forged_cookies_tokens_and_page_numbers_get_answers_not_server_errors(e2e: Stack) -> None:
    name, password = await staff_with_password(e2e)
    async with e2e.database.sessions() as session:
        staff_id = await session.scalar(select(Staff.id).where(Staff.name == name))
    now = int(time.time() * 1000)
    async with e2e.http() as http:
        form = await http.get("/backoffice/sign-in")
        sign_in_form = {"name": name, "password": password, "next": "/backoffice"}
        non_ascii = await http.post("/backoffice/sign-in", data={**sign_in_form, "csrf_token": "jeton-é"})
        assert non_ascii.status_code == 400 and "form expired" in non_ascii.text
        assert (
            await http.post("/backoffice/sign-in", data={**sign_in_form, "csrf_token": csrf_token(form)})
        ).status_code == 303
        page = await http.get("/backoffice")
        refused = await http.post("/backoffice/sign-out", data={"csrf_token": "jeton-é"})
        assert refused.status_code == 403 and "Form refused" in refused.text
        for number in ("²", str(10**20), "0"):  # int() refuses the first; no OFFSET holds the second
            listed = await http.get("/backoffice", params={"page": number})
            assert listed.status_code == 400 and "page must be a whole number" in html.unescape(listed.text), number
        assert (await http.post("/backoffice/sign-out", data={"csrf_token": csrf_token(page)})).status_code == 303
    for cookie in (
        f"{2**31}.{now}.nonce.signature",  # beyond the 32-bit id column
        f"{10**25}.{now}.nonce.signature",
        f"{staff_id}.{now}.nonce.sign\xe9",  # not ASCII
    ):
        raw = {b"Cookie": f"backoffice_session={cookie}".encode("latin-1")}
        async with httpx.AsyncClient(base_url=e2e.api_url or "", headers=raw) as client:
            answer = await client.get("/backoffice")
        assert (answer.status_code, answer.headers["location"].split("?")[0]) == (303, "/backoffice/sign-in"), cookie
