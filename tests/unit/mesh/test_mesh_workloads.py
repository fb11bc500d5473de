"""Workload identities with a real key ring and a fake clock: the JWT each instance gets, the
table entries the gateway receives, refresh overlap, release, sweep and the lifetime cap."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from courtyard.contracts import DEFAULT_TRUST_DOMAIN, MESH_AUDIENCE, GatewayCredential
from courtyard.core import FakeClock
from courtyard.iam import KeyRing, MemoryOidcStore
from courtyard.mesh._workloads import (
    MAX_LIFETIME,
    HeldCredential,
    WorkloadConfig,
    WorkloadIdentities,
    credential_key,
)
from courtyard.runtime import CredentialIssuer

ISSUER = "https://courtyard.example"


@dataclass
class RecordingListener:
    """Stands in for IdentityFeed.credentials_changed (and its acknowledgement)."""

    changes: list[tuple[list[GatewayCredential], list[str]]] = field(default_factory=list)
    applied: int = 0

    def __call__(self, upserts: list[GatewayCredential], revoked: list[str]) -> None:
        self.changes.append((upserts, revoked))

    async def wait_applied(self) -> None:
        self.applied += 1

    @property
    def revoked(self) -> list[str]:
        return [key for _, keys in self.changes for key in keys]

    @property
    def table(self) -> dict[str, GatewayCredential]:
        """The credential table a worker that applied every change holds."""
        table: dict[str, GatewayCredential] = {}
        for upserts, revoked in self.changes:
            table.update({c["key"]: c for c in upserts})
            for key in revoked:
                table.pop(key, None)
        return table


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=1_700_000_000.0)


@pytest.fixture
async def ring(clock: FakeClock) -> KeyRing:
    return await KeyRing.load(MemoryOidcStore(), clock=clock, propagation_delay=10)


@pytest.fixture
def listener() -> RecordingListener:
    return RecordingListener()


def identities(
    ring: KeyRing, clock: FakeClock, listener: RecordingListener, **config: object
) -> WorkloadIdentities:
    return WorkloadIdentities(
        ring,
        WorkloadConfig(issuer=ISSUER, **config),  # type: ignore[arg-type]
        clock=clock,
        listener=listener,
        applied=listener.wait_applied,
    )


def verify(ring: KeyRing, token: str) -> jwt.Token:
    """Decode ``token`` with nothing but the ring's public JWKS, as any verifier would."""
    return jwt.decode(token, KeySet.import_key_set(ring.jwks()), algorithms=["ES256"])  # type: ignore[arg-type]


async def test_it_is_the_issuer_the_supervisor_takes(
    ring: KeyRing, clock: FakeClock, listener: RecordingListener
) -> None:
    issuer: CredentialIssuer = identities(ring, clock, listener)  # mypy checks the Protocol
    issued = await issuer.issue("ledger", "ledger-1-abcdef")
    await issuer.release("ledger", "ledger-1-abcdef")
    assert listener.changes[-1] == ([], [credential_key(issued.token)])


async def test_the_token_is_an_es256_jwt_with_the_spiffe_id(
    ring: KeyRing, clock: FakeClock, listener: RecordingListener
) -> None:
    mesh = identities(ring, clock, listener)
    issued = await mesh.issue("ledger", "ledger-1-abcdef")
    token = verify(ring, issued.token)
    assert token.header == {"alg": "ES256", "typ": "JWT", "kid": ring.signing_key("ES256")["kid"]}
    claims = token.claims
    assert claims["iss"] == ISSUER
    assert claims["sub"] == f"spiffe://{DEFAULT_TRUST_DOMAIN}/app/ledger"
    assert claims["aud"] == MESH_AUDIENCE
    assert claims["iat"] == 1_700_000_000
    assert claims["exp"] == 1_700_000_600
    assert issued.expires_at == 1_700_000_600.0
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 16
    again = await mesh.issue("ledger", "ledger-1-abcdef")
    assert verify(ring, again.token).claims["jti"] != claims["jti"]


async def test_the_gateway_gets_the_hash_and_the_workload_identity(
    ring: KeyRing, clock: FakeClock, listener: RecordingListener
) -> None:
    mesh = identities(ring, clock, listener, trust_domain="prod.example")
    issued = await mesh.issue("ledger", "ledger-1-abcdef")
    key = hashlib.sha256(issued.token.encode()).hexdigest()
    assert credential_key(issued.token) == key
    expected = GatewayCredential(
        key=key,
        kind="workload",
        identity={
            "sub": "spiffe://prod.example/app/ledger",
            "email": "",
            "name": "ledger",
            "groups": [],
            "roles": [],
        },
        app_roles={},
        expires_at=1_700_000_600.0,
        app="ledger",
    )
    assert listener.changes == [([expected], [])]
    assert listener.applied == 1  # the issuer waited until the workers had it
    assert mesh.credentials() == [expected]
    assert issued.token not in str(listener.changes)  # the secret never leaves the issuer


async def test_lifetime_is_capped_at_fifteen_minutes(
    ring: KeyRing, clock: FakeClock, listener: RecordingListener
) -> None:
    for bad in (0, 0.5, -1, MAX_LIFETIME + 1, 3600):
        with pytest.raises(ValueError, match="at most 900"):
            WorkloadConfig(issuer=ISSUER, lifetime=bad)
    with pytest.raises(ValueError, match="trust domain"):
        WorkloadConfig(issuer=ISSUER, trust_domain="a/b")
    mesh = identities(ring, clock, listener, lifetime=MAX_LIFETIME)
    claims = verify(ring, (await mesh.issue("ledger", "i1")).token).claims
    assert claims["exp"] - claims["iat"] == 900


async def test_bad_names_are_refused(
    ring: KeyRing, clock: FakeClock, listener: RecordingListener
) -> None:
    mesh = identities(ring, clock, listener)
    for app in ("", "Ledger", "a/b", "x" * 64):
        with pytest.raises(ValueError, match="app name"):
            await mesh.issue(app, "i1")
    with pytest.raises(ValueError, match="instance"):
        await mesh.issue("ledger", "")
    assert listener.changes == []


async def test_a_refreshed_credential_overlaps_the_old_one_until_it_expires(
    ring: KeyRing, clock: FakeClock, listener: RecordingListener
) -> None:
    mesh = identities(ring, clock, listener)
    first = credential_key((await mesh.issue("ledger", "i1")).token)
    await clock.advance(400)  # 2/3 of 600 s: the supervisor refreshes
    second = credential_key((await mesh.issue("ledger", "i1")).token)
    assert {c["key"] for c in mesh.credentials()} == {first, second}
    assert set(listener.table) == {first, second}
    assert listener.revoked == []
    await clock.advance(199)
    assert mesh.sweep() == 0
    await clock.advance(1)  # the first one's exp
    assert {c["key"] for c in mesh.credentials()} == {second}  # never offered once expired
    assert mesh.sweep() == 1
    assert listener.changes[-1] == ([], [first])
    assert set(listener.table) == {second}
    assert mesh.sweep() == 0


async def test_issuing_sweeps_expired_credentials_too(
    ring: KeyRing, clock: FakeClock, listener: RecordingListener
) -> None:
    mesh = identities(ring, clock, listener)
    old = credential_key((await mesh.issue("ledger", "i1")).token)
    await clock.advance(600)
    fresh = await mesh.issue("billing", "b1")
    assert listener.changes[-1][1] == [old]
    assert set(listener.table) == {credential_key(fresh.token)}


async def test_release_revokes_one_instance_and_release_app_all(
    ring: KeyRing, clock: FakeClock, listener: RecordingListener
) -> None:
    mesh = identities(ring, clock, listener)
    a1 = [credential_key((await mesh.issue("ledger", "i1")).token) for _ in range(2)]
    a2 = credential_key((await mesh.issue("ledger", "i2")).token)
    a3 = credential_key((await mesh.issue("ledger", "i3")).token)
    other = credential_key((await mesh.issue("billing", "b1")).token)
    applied = listener.applied

    await mesh.release("ledger", "i1")
    assert sorted(listener.changes[-1][1]) == sorted(a1)  # both overlapping keys at once
    assert listener.applied == applied + 1
    assert set(listener.table) == {a2, a3, other}

    count = len(listener.changes)
    await mesh.release("ledger", "i1")  # already gone: nothing to tell
    await mesh.release("nobody", "x")
    assert len(listener.changes) == count

    await mesh.release_app("ledger")
    assert sorted(listener.changes[-1][1]) == sorted([a2, a3])
    assert set(listener.table) == {other}
    assert [c["app"] for c in mesh.credentials()] == ["billing"]


async def test_new_tokens_are_signed_with_the_rotated_key(
    ring: KeyRing, clock: FakeClock, listener: RecordingListener
) -> None:
    mesh = identities(ring, clock, listener)
    before = verify(ring, (await mesh.issue("ledger", "i1")).token).header["kid"]
    await ring.rotate()
    await clock.advance(11)  # past the propagation delay
    assert await ring.advance()
    after = verify(ring, (await mesh.issue("ledger", "i1")).token).header["kid"]
    assert after == ring.signing_key("ES256")["kid"] != before


async def test_the_control_plane_holds_its_own_credential(
    ring: KeyRing, clock: FakeClock, listener: RecordingListener
) -> None:
    mesh = identities(ring, clock, listener)
    held = HeldCredential(mesh, "courtyard", "control-plane", clock=clock)
    with pytest.raises(RuntimeError):
        held.current()
    await held.start()
    first = held.current()
    assert verify(ring, first).claims["sub"] == f"spiffe://{DEFAULT_TRUST_DOMAIN}/app/courtyard"
    renewing = asyncio.create_task(held.run())
    try:
        await clock.advance(399)
        assert held.current() == first
        await clock.advance(1)
        second = held.current()
        assert second != first
        assert {credential_key(first), credential_key(second)} <= set(listener.table)
        await clock.advance(400)
        assert held.current() not in (first, second)
    finally:
        renewing.cancel()
        await asyncio.wait({renewing})
    await held.aclose()
    assert listener.table == {}
