"""TLS for the gateway's public port: the server context every worker listens with, and a
self-signed certificate generated for local development (never for production).
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import ssl
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from courtyard.core import Clock, SystemClock
from courtyard.gateway._config import TlsInvalid

# Mozilla's "intermediate" server configuration (ssl-config.mozilla.org, guideline 5.7) for
# TLS 1.2: forward-secret AEAD suites only. TLS 1.3 suites are all strong and stay OpenSSL's
# defaults. The DHE suites of the guideline are left out: they need DH parameters we do not ship.
CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ]
)
DEV_CERT_FILE = "dev-cert.pem"
DEV_KEY_FILE = "dev-key.pem"
DEV_VALIDITY = datetime.timedelta(days=30)
DEV_RENEW_BEFORE = datetime.timedelta(days=1)  # reuse a certificate valid longer than this
DEV_HOSTS = ("localhost", "127.0.0.1", "::1")


def server_context(cert: str | Path, key: str | Path) -> ssl.SSLContext:
    """A server context for the PEM ``cert`` chain and its ``key``; raises TlsInvalid with one
    readable line when a file is missing or unreadable, is not PEM, or the pair does not match.
    """
    _check_pem(cert, key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # OWASP TLS Cheat Sheet, "Only Support Strong Protocols": TLS 1.2 and 1.3 only.
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(CIPHERS)
    # Workers do not share ticket keys, so a ticket from one is useless on another; Mozilla's
    # guideline turns tickets off for the same reason. No renegotiation (CVE-2009-3555 class).
    context.options |= ssl.OP_NO_TICKET | ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION
    context.set_alpn_protocols(["http/1.1"])  # RFC 7301; the gateway speaks HTTP/1.1 only
    try:
        # An encrypted key would make OpenSSL prompt on the terminal: answer with no password.
        context.load_cert_chain(str(cert), str(key), password=lambda: b"")
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise TlsInvalid(f"the TLS key {key} does not match the certificate {cert}") from None
        raise TlsInvalid(
            f"cannot use the TLS certificate {cert} with the key {key}: {exc}"
        ) from None
    return context


def _check_pem(cert: str | Path, key: str | Path) -> None:
    """Name the file at fault: OpenSSL's own errors ("PEM lib") do not say which one it is."""
    cert_pem, key_pem = _read("certificate", cert), _read("key", key)
    try:
        x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise TlsInvalid(f"the TLS certificate {cert} is not a PEM certificate") from None
    try:
        serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:  # cryptography's way of saying "encrypted, and no password given"
        raise TlsInvalid(
            f"the TLS key {key} is encrypted; give it unencrypted, readable by the node only"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise TlsInvalid(f"the TLS key {key} is not a PEM private key") from None


def _read(kind: str, path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise TlsInvalid(f"cannot read the TLS {kind} {path}: {exc.strerror}") from None


def ensure_dev_certificate(
    directory: Path, hosts: Iterable[str] = (), *, clock: Clock | None = None
) -> tuple[Path, Path]:
    """The (certificate, key) files of a self-signed development certificate in ``directory``.

    The certificate names localhost, 127.0.0.1, ::1 and ``hosts`` (DNS names or IP
    addresses; unspecified addresses such as 0.0.0.0 are skipped). The one already there is
    reused while it names every host, matches its key and stays valid for more than a day;
    otherwise a new EC P-256 key (file mode 0600) and a 30-day certificate replace it.
    """
    now = datetime.datetime.fromtimestamp((clock or SystemClock()).time(), datetime.UTC)
    names = _subject_names([*DEV_HOSTS, *hosts])
    cert_path = directory / DEV_CERT_FILE
    key_path = directory / DEV_KEY_FILE
    if _is_reusable(cert_path, key_path, names, now):
        return cert_path, key_path
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = _self_signed(key, names, now)
    _write(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        0o600,
    )
    _write(cert_path, certificate.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert_path, key_path


def _subject_names(hosts: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        text = host.strip().strip("[]").rstrip(".").lower()
        if not text:
            continue
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            name: x509.GeneralName = x509.DNSName(text)
        else:
            if address.is_unspecified:  # 0.0.0.0 / :: listen everywhere; nobody dials them
                continue
            name = x509.IPAddress(address)
        if name not in names:
            names.append(name)
    return names


def _is_reusable(
    cert_path: Path, key_path: Path, names: list[x509.GeneralName], now: datetime.datetime
) -> bool:
    try:
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        present = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (OSError, ValueError, TypeError, x509.ExtensionNotFound):
        return False
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return (
        certificate.not_valid_after_utc - now > DEV_RENEW_BEFORE
        and certificate.not_valid_before_utc <= now
        and all(name in present.value for name in names)
        and key.public_key().public_bytes(der, public)
        == certificate.public_key().public_bytes(der, public)
    )


def _self_signed(
    key: ec.EllipticCurvePrivateKey, names: list[x509.GeneralName], now: datetime.datetime
) -> x509.Certificate:
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Courtyard development"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Courtyard local development certificate"),
        ]
    )
    public = key.public_key()
    # A CA:FALSE leaf that is its own issuer: clients trust exactly this certificate, it can
    # sign nothing else (RFC 5280 §4.2.1.9). SKI/AKI keep strict verifiers happy (§4.2.1.1-2).
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # tolerate a little clock skew
        .not_valid_after(now + DEV_VALIDITY)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` atomically, the file created with ``mode`` from the start."""
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, mode)  # exactly ``mode``, whatever the umask
    tmp.replace(path)
