"""TLS on the gateway's port: served with a generated development certificate and verified by
a real client, plain HTTP refused, the certificate's names, reuse and renewal, and readable
errors for bad certificate files."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import gateway_testkit as kit
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from courtyard.core import FakeClock
from courtyard.gateway import Gateway, GatewayConfig
from courtyard.gateway._config import TlsInvalid
from courtyard.gateway._tls import ensure_dev_certificate, server_context

DAY = 86400.0


def _client_context(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


def _names(cert: Path) -> tuple[set[str], set[str]]:
    certificate = x509.load_pem_x509_certificate(cert.read_bytes())
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = set(san.get_values_for_type(x509.DNSName))
    ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return dns, ips


@pytest.fixture
def dev_pair(tmp_path: Path) -> tuple[Path, Path]:
    return ensure_dev_certificate(tmp_path / "tls", ["gw.test"])


@pytest.fixture
async def tls_port(
    dev_pair: tuple[Path, Path],
    upstream: kit.Upstream,
) -> AsyncIterator[int]:
    cert, key = dev_pair
    gw = Gateway(GatewayConfig(shutdown_grace=1.0, tls_cert=str(cert), tls_key=str(key)))
    gw.apply(kit.snapshot(1, [kit.route()], {"echo": [upstream.instance()]}))
    _, port = await gw.start("127.0.0.1", 0)
    assert gw.is_tls
    yield port
    await gw.aclose(0.5)


async def test_healthz_over_tls_verifies_against_the_generated_certificate(
    tls_port: int, dev_pair: tuple[Path, Path]
) -> None:
    async with httpx.AsyncClient(verify=_client_context(dev_pair[0])) as client:
        health = await client.get(f"https://127.0.0.1:{tls_port}/healthz")
        proxied = await client.get(f"https://127.0.0.1:{tls_port}/apps/echo/x")
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    assert proxied.status_code == 200
    assert health.http_version == "HTTP/1.1"


async def test_handshake_offers_http11_and_modern_tls_only(
    tls_port: int, dev_pair: tuple[Path, Path]
) -> None:
    context = _client_context(dev_pair[0])
    context.set_alpn_protocols(["h2", "http/1.1"])
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", tls_port, ssl=context, server_hostname="localhost"
    )
    tls = writer.get_extra_info("ssl_object")
    assert tls.selected_alpn_protocol() == "http/1.1"
    assert tls.version() in {"TLSv1.2", "TLSv1.3"}
    writer.close()
    await writer.wait_closed()
    assert reader is not None


def test_server_context_follows_the_intermediate_profile(dev_pair: tuple[Path, Path]) -> None:
    # A TLS 1.1 client cannot even be built on OpenSSL 3's defaults, so the floor is checked
    # on the context itself.
    context = server_context(*dev_pair)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_TICKET
    assert context.options & ssl.OP_NO_RENEGOTIATION
    tls12 = {c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert tls12 and all(name.startswith("ECDHE-") for name in tls12)
    assert not any("CBC" in name or "SHA1" in name for name in tls12)


async def test_plain_http_to_the_tls_port_gets_no_answer(tls_port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", tls_port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    async with asyncio.timeout(kit.TIMEOUT):
        data = await reader.read()  # the server closes after a failed handshake
    writer.close()
    assert not data.startswith(b"HTTP/")
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.TransportError):
            await client.get(f"http://127.0.0.1:{tls_port}/healthz")


def test_generated_certificate_names_the_hosts_and_guards_its_key(
    dev_pair: tuple[Path, Path],
) -> None:
    cert, key = dev_pair
    dns, ips = _names(cert)
    assert dns == {"localhost", "gw.test"}
    assert ips == {"127.0.0.1", "::1"}
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert private.curve.name == "secp256r1"
    certificate = x509.load_pem_x509_certificate(cert.read_bytes())
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert datetime.timedelta(days=30) <= lifetime <= datetime.timedelta(days=30, minutes=10)
    constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.value.ca is False


def test_unspecified_and_duplicate_hosts_are_left_out(tmp_path: Path) -> None:
    cert, _ = ensure_dev_certificate(tmp_path, ["0.0.0.0", "::", "[::1]", "LOCALHOST.", "10.1.2.3"])
    dns, ips = _names(cert)
    assert dns == {"localhost"}
    assert ips == {"127.0.0.1", "::1", "10.1.2.3"}
    assert ipaddress.ip_address("10.1.2.3")


def test_certificate_is_reused_while_valid_then_renewed(tmp_path: Path) -> None:
    start = 1_700_000_000.0
    first = ensure_dev_certificate(tmp_path, ["gw.test"], clock=FakeClock(start))
    pem = first[0].read_bytes()
    later = FakeClock(start + 28 * DAY)  # 2 days left: still reused
    assert ensure_dev_certificate(tmp_path, ["gw.test"], clock=later) == first
    assert first[0].read_bytes() == pem
    late = FakeClock(start + 29.5 * DAY)  # half a day left: renewed
    again = ensure_dev_certificate(tmp_path, ["gw.test"], clock=late)
    assert again == first
    assert again[0].read_bytes() != pem
    assert stat.S_IMODE(again[1].stat().st_mode) == 0o600


def test_certificate_is_renewed_for_a_new_host_or_a_foreign_key(tmp_path: Path) -> None:
    cert, key = ensure_dev_certificate(tmp_path, ["a.test"])
    pem = cert.read_bytes()
    assert ensure_dev_certificate(tmp_path, []) == (cert, key)  # fewer names: still fine
    assert cert.read_bytes() == pem
    ensure_dev_certificate(tmp_path, ["b.test"])
    assert "b.test" in _names(cert)[0]
    pem = cert.read_bytes()
    key.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ensure_dev_certificate(tmp_path, ["b.test"])
    assert cert.read_bytes() != pem
    server_context(cert, key)  # the pair matches again


def test_missing_files_are_one_readable_error(tmp_path: Path, dev_pair: tuple[Path, Path]) -> None:
    cert, key = dev_pair
    missing = tmp_path / "nope.pem"
    with pytest.raises(TlsInvalid, match=f"cannot read the TLS certificate {missing}: No such"):
        server_context(missing, key)
    with pytest.raises(TlsInvalid, match=f"cannot read the TLS key {missing}: No such"):
        server_context(cert, missing)


def test_mismatched_pair_and_garbage_are_readable_errors(tmp_path: Path) -> None:
    cert_a, _ = ensure_dev_certificate(tmp_path / "a")
    _, key_b = ensure_dev_certificate(tmp_path / "b")
    with pytest.raises(TlsInvalid, match="does not match the certificate"):
        server_context(cert_a, key_b)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(TlsInvalid, match=f"certificate {garbage} is not a PEM certificate"):
        server_context(garbage, key_b)
    with pytest.raises(TlsInvalid, match=f"key {garbage} is not a PEM private key"):
        server_context(cert_a, garbage)
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw"),
        )
    )
    with pytest.raises(TlsInvalid, match=f"key {encrypted} is encrypted"):
        server_context(cert_a, encrypted)


def test_certificate_without_key_is_refused() -> None:
    with pytest.raises(TlsInvalid, match="give both or neither"):
        GatewayConfig(tls_cert="cert.pem")


async def test_bad_pair_fails_start_before_listening(tmp_path: Path) -> None:
    gw = Gateway(GatewayConfig(tls_cert=str(tmp_path / "c.pem"), tls_key=str(tmp_path / "k.pem")))
    with pytest.raises(TlsInvalid, match="cannot read the TLS certificate"):
        await gw.start("127.0.0.1", 0)
    assert gw.addresses == []
    await gw.aclose(0)
