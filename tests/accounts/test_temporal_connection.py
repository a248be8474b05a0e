"""The connection to a real cluster: TLS with a client certificate, a server CA and name, an API key, the
namespace, all from settings through accounts.temporal.connect, against a TLS listener of the test's own
(it records the handshake a Temporal frontend would see); a wrong file is one line naming its setting."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import ACCOUNTS, CHECKOUT
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from temporalio.service import TLSConfig

from accounts.settings import ConfigurationError, Settings
from accounts.temporal import connect, connect_options

SERVER_NAME = "temporal.test"


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None, *,
    ca: bool = False, dns: str | None = None,
) -> x509.Certificate:  # fmt: skip
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, issuer_key = issuer or (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if dns:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(
    path: Path, certificate: x509.Certificate | None = None, key: ec.EllipticCurvePrivateKey | None = None
) -> Path:
    if certificate is not None:
        path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        path.write_bytes(pem)
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca_key, server_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _issue("Test CA", ca_key, None, ca=True)
    issuer = (ca.subject, ca_key)
    return Pki(
        ca=_write(folder / "ca.pem", ca),
        server_cert=_write(folder / "server.pem", _issue(SERVER_NAME, server_key, issuer, dns=SERVER_NAME)),
        server_key=_write(folder / "server.key", key=server_key),
        client_cert=_write(folder / "client.pem", _issue("accounts-worker", client_key, issuer)),
        client_key=_write(folder / "client.key", key=client_key),
    )


@dataclass
class Handshakes:
    port: int
    seen: list[tuple[str | None, str | None]] = field(default_factory=list)  # (SNI, client certificate's CN)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


@contextlib.asynccontextmanager
async def tls_listener(pki: Pki) -> AsyncIterator[Handshakes]:
    """A TLS server that asks for a client certificate signed by the test CA and records each handshake."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    context.load_verify_locations(pki.ca)
    context.verify_mode = ssl.CERT_OPTIONAL  # a client without a certificate is recorded too (CN None)
    context.set_alpn_protocols(["h2"])
    names: dict[int, str | None] = {}

    def remember_sni(sock: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
        names[id(sock)] = server_name

    context.sni_callback = remember_sni
    record = Handshakes(0)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        peer = writer.get_extra_info("peercert") or {}
        common_name = next((v for rdn in peer.get("subject", ()) for k, v in rdn if k == "commonName"), None)
        record.seen.append((names.get(id(ssl_object)), common_name))
        record.arrived.set()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    record.port = server.sockets[0].getsockname()[1]
    try:
        yield record
    finally:
        server.close()
        await server.wait_closed()


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, payload_encryption=False, **values)  # type: ignore[arg-type,call-arg]


async def handshake(values: dict[str, object], record: Handshakes) -> tuple[str | None, str | None]:
    """Connect with these settings until the listener saw the TLS handshake (then give up: it speaks no gRPC)."""
    attempt = asyncio.get_running_loop().create_task(connect(settings(**values)))
    try:
        await asyncio.wait_for(record.arrived.wait(), 20)
    finally:
        attempt.cancel()
        with contextlib.suppress(BaseException):
            await attempt
    return record.seen[0]


async def test_mtls_presents_the_client_certificate_and_checks_the_server_by_its_name(pki: Pki) -> None:
    async with tls_listener(pki) as record:
        seen = await handshake(
            {
                "temporal_address": f"127.0.0.1:{record.port}",
                "temporal_tls_cert": pki.client_cert,
                "temporal_tls_key": pki.client_key,
                "temporal_tls_server_ca": pki.ca,
                "temporal_tls_server_name": SERVER_NAME,
            },
            record,
        )
    assert seen == (SERVER_NAME, "accounts-worker")


async def test_an_api_key_turns_tls_on_and_travels_with_the_namespace(pki: Pki) -> None:
    async with tls_listener(pki) as record:
        values: dict[str, object] = {
            "temporal_address": f"127.0.0.1:{record.port}",
            "temporal_api_key": "cloud-api-key",
            "temporal_namespace": "shop.a1b2c",
            "temporal_tls_server_ca": pki.ca,
            "temporal_tls_server_name": SERVER_NAME,
        }
        assert await handshake(values, record) == (SERVER_NAME, None)  # TLS, and no certificate was asked for
        client = await connect(settings(**values), lazy=True)
    config = client.service_client.config
    assert config.api_key == "cloud-api-key" and client.namespace == "shop.a1b2c"
    assert isinstance(config.tls, TLSConfig) and config.tls.server_root_ca_cert == pki.ca.read_bytes()
    # an API key alone (Temporal Cloud's address has a public certificate): TLS with the system's roots
    assert connect_options(settings(temporal_api_key="k"))["tls"] is True
    assert connect_options(settings())["tls"] is False and connect_options(settings())["api_key"] is None


def test_wrong_tls_files_are_one_line_naming_the_setting(pki: Pki, tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    cases = [
        ({"temporal_tls_cert": missing, "temporal_tls_key": pki.client_key}, "ACCOUNTS_TEMPORAL_TLS_CERT: cannot read"),
        ({"temporal_tls_cert": pki.client_key, "temporal_tls_key": pki.client_key}, "ACCOUNTS_TEMPORAL_TLS_CERT: "),
        ({"temporal_tls_cert": pki.client_cert, "temporal_tls_key": pki.ca}, "ACCOUNTS_TEMPORAL_TLS_KEY: "),
        ({"temporal_tls_server_ca": missing}, "ACCOUNTS_TEMPORAL_TLS_SERVER_CA: cannot read"),
    ]
    for values, expected in cases:
        with pytest.raises(ConfigurationError) as refused:
            connect_options(settings(**values))
        assert str(refused.value).startswith(expected) and "\n" not in str(refused.value), values
    with pytest.raises(ValueError, match="ACCOUNTS_TEMPORAL_TLS_CERT and ACCOUNTS_TEMPORAL_TLS_KEY"):
        settings(temporal_tls_cert=pki.client_cert)
    with pytest.raises(ValueError, match="ACCOUNTS_TEMPORAL_TLS is false"):
        settings(temporal_tls=False, temporal_tls_server_ca=pki.ca)


def test_the_worker_command_stops_with_one_line_for_a_missing_file_or_key(tmp_path: Path) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ACCOUNTS_")}
    runs = {
        "ACCOUNTS_TEMPORAL_TLS_CERT": {"ACCOUNTS_TEMPORAL_TLS_CERT": str(tmp_path / "gone.pem"),
                                       "ACCOUNTS_TEMPORAL_TLS_KEY": str(tmp_path / "gone.key")},
        "ACCOUNTS_PAYLOAD_ENCRYPTION_KEY": {"ACCOUNTS_ENVIRONMENT": "production", "ACCOUNTS_SECRET_KEY": "s" * 40,
                                            "ACCOUNTS_JWT_PRIVATE_KEY_PATH": str(tmp_path / "jwt.pem")},
    }  # fmt: skip
    for setting, environment in runs.items():
        done = subprocess.run(
            [*ACCOUNTS, "worker"], cwd=tmp_path, env={**base, **environment, "PYTHONPATH": CHECKOUT},
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 1, done
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and setting in lines[0] and "Traceback" not in done.stderr, done.stderr
