"""The codec server of the Temporal UI and CLI over HTTP (api/routes/codec.py), against a real run on the
dev server: its raw history holds ciphertext, the codec decodes it for staff (API key or web session) and
answers everyone else 401; CORS lets the configured UI origin, and only it, read the answers."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from conftest import Database, Stack, StackFactory, payload_nodes
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads
from test_backoffice_http import staff_key
from test_backoffice_web import staff_with_password, web_sign_in
from test_login_http import registered

from accounts.temporal import CODEC_PATH, KEY_ID
from starter.client import registration_id

pytestmark = pytest.mark.e2e
DECODE, ENCODE = f"{CODEC_PATH}/decode", f"{CODEC_PATH}/encode"
UI = "https://temporal-ui.shop.example"
# a field of the registration input: in its decoded payload only (ids and search attributes are plain)
INPUT_FIELD = "send_first_link"


@pytest_asyncio.fixture
async def e2e(stack: StackFactory, dev_server: Any, database: Database) -> AsyncIterator[Stack]:
    # the default encryption (a development key under the stack's var/); the UI's origin configured
    async with stack(dev_server, database, api=True, codec_cors_origins=[UI]) as built:
        yield built


async def started_input(e2e: Stack, reference: str) -> tuple[str, bytes]:
    """The registration's start input as the Temporal UI sends it to /decode, and the raw history."""
    history = await e2e.client.get_workflow_handle(registration_id(reference)).fetch_history()
    payloads = history.events[0].workflow_execution_started_event_attributes.input
    return json_format.MessageToJson(payloads), b"".join(event.SerializeToString() for event in history.events)


async def temporal_show(e2e: Stack, reference: str, *options: str, codec: bool = True) -> list[str]:
    """The payloads' data of `temporal workflow show` for the registration, through the API's codec when asked."""
    assert e2e.api_url is not None
    arguments = [
        "workflow", "show", "--workflow-id", registration_id(reference), "--output", "json",
        "--address", e2e.client.service_client.config.target_host, "--namespace", e2e.client.namespace,
    ]  # fmt: skip
    if codec:
        arguments += ["--codec-endpoint", f"{e2e.api_url}{CODEC_PATH}", *options]
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "temporal"), *arguments,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr.decode()
    nodes = payload_nodes(json.loads(stdout))
    return [base64.b64decode(node["data"]).decode("utf-8", "replace") for node in nodes]


def texts(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    decoded = json_format.Parse(response.text, Payloads())
    return [payload.data.decode() for payload in decoded.payloads]


def error(response: httpx.Response) -> tuple[int, str]:
    (only,) = response.json()["errors"]
    return response.status_code, only["code"]


async def test_staff_read_a_run_through_the_codec_and_everyone_else_gets_401(e2e: Stack) -> None:
    headers = {"Content-Type": "application/json", "X-Namespace": e2e.settings.temporal_namespace}
    async with e2e.http() as http:
        email, reference = await registered(e2e, http, confirm=False)
        body, raw = await started_input(e2e, reference)
        assert email.encode() not in raw and b"Byron" not in raw  # what Temporal stores (and the UI shows raw)
        assert email not in body

        anonymous = await http.post(DECODE, content=body, headers=headers)
        assert error(anonymous) == (401, "002") and anonymous.headers["www-authenticate"].startswith("Bearer")
        wrong = await http.post(DECODE, content=body, headers={**headers, "Authorization": "Bearer stf_wrong"})
        assert error(wrong) == (401, "001")

        support = {**headers, "Authorization": f"Bearer {await staff_key(e2e, 'codec-support', 'support')}"}
        (decoded,) = texts(await http.post(DECODE, content=body, headers=support))
        # the input as the worker reads it (since issue 15 it names the customer by reference only)
        assert INPUT_FIELD in decoded and reference in decoded and email not in decoded
        answered = await http.post(DECODE, content=body, headers=support)
        assert answered.headers["cache-control"] == "no-store"

        # encoding makes payloads the worker trusts: admins only
        plain = json.dumps({"payloads": [{"metadata": {"encoding": "anNvbi9wbGFpbg=="}, "data": "IndyaXR0ZW4i"}]})
        assert error(await http.post(ENCODE, content=plain, headers=support)) == (403, "403")
        admin = {**headers, "Authorization": f"Bearer {await staff_key(e2e, 'codec-admin', 'admin')}"}
        encoded = await http.post(ENCODE, content=plain, headers=admin)
        assert encoded.status_code == 200, encoded.text
        sealed = json_format.Parse(encoded.text, Payloads()).payloads[0]
        assert sealed.metadata["encoding"] == b"binary/encrypted+aes256gcm" and KEY_ID in sealed.metadata
        assert texts(await http.post(DECODE, content=encoded.text, headers=admin)) == ['"written"']

        other = {**support, "X-Namespace": "someone-else"}
        assert error(await http.post(DECODE, content=body, headers=other)) == (400, "400")
        assert error(await http.post(DECODE, content=b"not json", headers=support)) == (400, "400")

    # Temporal's own CLI, a real client of the protocol: decoded with a staff key, ciphertext without
    shown = await temporal_show(e2e, reference, "--codec-auth", support["Authorization"])
    assert any(INPUT_FIELD in text for text in shown)
    assert not any(INPUT_FIELD in text for text in await temporal_show(e2e, reference, codec=False))

    # a staff member signed in to the back-office web UI: the session cookie (path /backoffice) opens it too
    async with e2e.http() as browser:
        name, password = await staff_with_password(e2e, "support", "codec-web")
        assert (await web_sign_in(browser, name, password)).status_code == 303
        (decoded,) = texts(await browser.post(DECODE, content=body, headers=headers))
        assert INPUT_FIELD in decoded


async def test_cors_answers_the_configured_ui_origin_only(e2e: Stack) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-namespace,authorization",
    }
    async with e2e.http() as http:
        allowed = await http.options(DECODE, headers={**preflight, "Origin": UI})
        assert allowed.status_code == 204
        assert allowed.headers["access-control-allow-origin"] == UI
        assert allowed.headers["access-control-allow-credentials"] == "true"
        assert "POST" in allowed.headers["access-control-allow-methods"]
        granted = {h.strip().lower() for h in allowed.headers["access-control-allow-headers"].split(",")}
        assert {"content-type", "x-namespace", "authorization"} <= granted

        # the default origin (ACCOUNTS_TEMPORAL_UI_URL's) is not configured here, nor is anyone else's
        for stranger in ("http://localhost:8233", "https://evil.example"):
            refused = await http.options(DECODE, headers={**preflight, "Origin": stranger})
            assert refused.status_code == 403 and "access-control-allow-origin" not in refused.headers

        # a real request: the UI's page can read even the refusal; a stranger's page reads nothing
        body = json.dumps({"payloads": []})
        key = {"Authorization": f"Bearer {await staff_key(e2e, 'codec-cors', 'support')}"}
        refusal = await http.post(DECODE, content=body, headers={"Origin": UI})
        assert refusal.status_code == 401 and refusal.headers["access-control-allow-origin"] == UI
        answer = await http.post(DECODE, content=body, headers={**key, "Origin": "https://evil.example"})
        assert answer.status_code == 200 and "access-control-allow-origin" not in answer.headers
        assert (await http.post(DECODE, content=body, headers={**key, "Origin": UI})).json() == {"payloads": []}
