"""The node's TLS settings turned into the files its gateway workers serve: a given pair checked
up front, a development certificate generated (and reused) in the data directory, and a real
worker started by GatewayWorkers answering over TLS."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from courtyard.core import CourtyardError
from courtyard.gateway._tls import ensure_dev_certificate
from courtyard.node import NodeConfig
from courtyard.node._servers import reserve_port
from courtyard.node._workers import GatewayWorkers, gateway_tls
from courtyard.transport import ControlServer


def _san(cert: Path) -> set[str]:
    certificate = x509.load_pem_x509_certificate(cert.read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(value) for value in names.get_values_for_type(x509.DNSName)} | {
        str(value) for value in names.get_values_for_type(x509.IPAddress)
    }


def test_no_tls_settings_means_plain_http(tmp_path: Path) -> None:
    assert gateway_tls(NodeConfig(), tmp_path) is None
    assert not (tmp_path / "tls").exists()


def test_self_signed_certificate_names_every_way_in(tmp_path: Path) -> None:
    config = NodeConfig(
        host="192.0.2.7",
        domain="apps.test",
        public_url="https://courtyard.test:8443",
        tls_self_signed=True,
    )
    pair = gateway_tls(config, tmp_path)
    assert pair == (tmp_path / "tls" / "dev-cert.pem", tmp_path / "tls" / "dev-key.pem")
    assert _san(pair[0]) == {
        "localhost",
        "127.0.0.1",
        "::1",
        "192.0.2.7",
        "apps.test",
        "*.apps.test",
        "courtyard.test",
    }
    pem = pair[0].read_bytes()
    assert gateway_tls(config, tmp_path) == pair
    assert pair[0].read_bytes() == pem  # reused while valid


def test_a_given_pair_wins_over_self_signed(tmp_path: Path) -> None:
    cert, key = ensure_dev_certificate(tmp_path / "mine")
    config = NodeConfig(tls_cert=cert, tls_key=key, tls_self_signed=True)
    assert gateway_tls(config, tmp_path / "data") == (cert.resolve(), key.resolve())
    assert not (tmp_path / "data" / "tls").exists()


def test_a_bad_pair_stops_the_node_with_one_line(tmp_path: Path) -> None:
    cert, _ = ensure_dev_certificate(tmp_path / "a")
    _, key = ensure_dev_certificate(tmp_path / "b")
    with pytest.raises(CourtyardError, match="does not match the certificate"):
        gateway_tls(NodeConfig(tls_cert=cert, tls_key=key), tmp_path)
    with pytest.raises(CourtyardError, match="cannot read the TLS certificate"):
        gateway_tls(NodeConfig(tls_cert=tmp_path / "none.pem", tls_key=key), tmp_path)


async def test_workers_serve_tls_with_the_pair(tmp_path: Path) -> None:
    pair = gateway_tls(NodeConfig(tls_self_signed=True), tmp_path)
    assert pair is not None
    control = ControlServer("s3cret")
    control_address = await control.start()
    holder = reserve_port("127.0.0.1", 0)
    port = holder.getsockname()[1]
    workers = GatewayWorkers(
        count=1,
        listen=("127.0.0.1", port),
        control=control_address,
        token="s3cret",
        log_dir=tmp_path / "logs",
        access_log=False,
        tls=pair,
    )
    try:
        await workers.start()
        await control.wait_workers(1, timeout=30)
        context = ssl.create_default_context(cafile=str(pair[0]))
        async with httpx.AsyncClient(verify=context) as client:
            async with asyncio.timeout(15):
                while True:
                    try:
                        response = await client.get(f"https://127.0.0.1:{port}/healthz")
                        break
                    except httpx.ConnectError:
                        await asyncio.sleep(0.05)
        assert response.status_code == 200
    finally:
        await workers.aclose(5)
        await control.aclose()
        holder.close()
