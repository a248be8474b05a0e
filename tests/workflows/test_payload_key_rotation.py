"""Payload keys rotate: a registration started under the old key is finished by a worker that encrypts with
the new one and keeps the old one for reading (ACCOUNTS_PAYLOAD_DECRYPTION_KEYS); its history then holds
payloads of both keys, each naming its key, and no customer data in the clear."""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest
from conftest import (
    Database,
    StackFactory,
    client_with_converter,
    decoded_payload_texts,
    payload_nodes,
    token_from,
    unique_email,
)
from pydantic import SecretStr
from test_registration_workflow import signup

from accounts.temporal import KEY_ID, EncryptionCodec, UnknownPayloadKey, key_id
from starter import AccountsClient
from starter.client import registration_id
from worker import build_worker
from workflows.registration import RegistrationWorkflow


async def test_a_history_written_with_the_old_key_is_read_and_finished_after_rotation(
    stack: StackFactory, dev_server: Any, database: Database
) -> None:
    old, new = os.urandom(32), os.urandom(32)
    async with stack(dev_server, database, payload_encryption_key=base64.b64encode(old).decode()) as before:
        email = unique_email()
        registered = await before.accounts.register(signup(email))
        token = token_from(await before.mail_to(email, "confirm"))
        assert before.worker is not None
        await before.worker.shutdown()  # the deploy that rotates the key: every process restarts with it

        rotated = before.settings.model_copy(
            update={
                "payload_encryption_key": SecretStr(base64.b64encode(new).decode()),
                "payload_decryption_keys": [SecretStr(base64.b64encode(old).decode())],
            }
        )
        client = client_with_converter(dev_server, rotated)
        handle = client.get_workflow_handle_for(
            RegistrationWorkflow.run, registration_id(registered.customer_reference)
        )
        async with build_worker(client, rotated, database.sessions):  # no cached run: it replays the old payloads
            assert (await handle.query(RegistrationWorkflow.status)).stage == "awaiting_verification"
            confirmed = await AccountsClient(client, rotated, database.sessions).confirm_email(token)
            assert confirmed.outcome == "activated"
            assert (await handle.result()).outcome == "verified"

    history = await handle.fetch_history()
    named = {
        base64.b64decode(node["metadata"][KEY_ID]).decode()
        for node in payload_nodes(history.to_json_dict())
        if KEY_ID in node["metadata"]
    }
    assert named == {key_id(old), key_id(new)}
    raw = b"".join(event.SerializeToString() for event in history.events)
    assert email.encode() not in raw and b"Lovelace" not in raw
    decoded = await decoded_payload_texts(client, history)  # the service reads all of it, old key and new
    assert any("send_first_link" in text for text in decoded) and not any(email in text for text in decoded)
    started = history.events[0].workflow_execution_started_event_attributes.input.payloads
    with pytest.raises(UnknownPayloadKey, match=key_id(old)):  # the old key dropped too early: named
        await EncryptionCodec(new).decode(started)
