"""The Ed25519 key that signs checkpoints: created once, kept private, published as PEM/base64.

Whoever holds this key can sign any history, so the file is created 0600 and refused when
others may read it; verifiers only ever need the public half.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from courtyard.audit._errors import AuditKeyError
from courtyard.audit._files import fsync_dir

PublicKeyLike = Ed25519PublicKey | bytes | str


def key_id(public_key: Ed25519PublicKey) -> str:
    """SHA-256 of the raw public key, hex: names the key in every checkpoint."""
    return hashlib.sha256(raw_public_key(public_key)).hexdigest()


def raw_public_key(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_pem(public_key: Ed25519PublicKey) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def public_key_b64(public_key: Ed25519PublicKey) -> str:
    return base64.b64encode(raw_public_key(public_key)).decode("ascii")


def load_public_key(value: PublicKeyLike) -> Ed25519PublicKey:
    """A public key from an object, 32 raw bytes, base64 of those, or PEM text/bytes."""
    if isinstance(value, Ed25519PublicKey):
        return value
    data = value.encode("ascii", "replace") if isinstance(value, str) else value
    if b"-----BEGIN" in data:
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError as exc:
            raise AuditKeyError(f"not a PEM public key: {exc}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise AuditKeyError("the PEM public key is not an Ed25519 key")
        return key
    if isinstance(value, str) or len(data) != 32:
        try:
            data = base64.b64decode(data.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise AuditKeyError(
                "a public key is PEM, base64 of 32 bytes, or 32 raw bytes"
            ) from None
    if len(data) != 32:
        raise AuditKeyError(f"an Ed25519 public key has 32 bytes, not {len(data)}")
    return Ed25519PublicKey.from_public_bytes(data)


def signature_ok(public_key: Ed25519PublicKey, signature_b64: str, message: bytes) -> bool:
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        public_key.verify(signature, message)
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


@dataclass(frozen=True)
class SigningKey:
    """The private key and what is derived from it."""

    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)

    def sign(self, message: bytes) -> str:
        """The Ed25519 signature of ``message`` (RFC 8032), base64."""
        return base64.b64encode(self.private_key.sign(message)).decode("ascii")


def load_signing_key(path: Path, *, create: bool) -> SigningKey:
    """The key at ``path``; made there (0600, in a 0700 folder) when missing and ``create``."""
    if not path.exists():
        if not create:
            raise AuditKeyError(
                f"{path} is missing, and this audit trail was signed with it: restore the file "
                "(a new key could not sign on from the existing checkpoints)"
            )
        _create(path)
    try:
        mode = path.stat().st_mode
        if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise AuditKeyError(
                f"{path} can be read by other users; run `chmod 600 {path}` (and consider the "
                "key exposed)"
            )
        data = path.read_bytes()
    except OSError as exc:
        raise AuditKeyError(f"cannot read {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise AuditKeyError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditKeyError(f"{path} does not hold an Ed25519 key")
    return SigningKey(key)


def _create(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        # O_EXCL: two processes racing to create it keep the first one's key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(path.parent)
