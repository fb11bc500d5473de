"""The signing key ring: publish before signing, retire after every token expired."""

from __future__ import annotations

import base64
import json
from dataclasses import replace

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from courtyard.core import FakeClock
from courtyard.iam._keyring import KeyGeneration, KeyRing, plan_advance
from courtyard.iam._oidc_store import MemoryOidcStore

from .conftest import START, first_generation


def _gen(id: str, state: str, created: float, retired: float | None = None) -> KeyGeneration:
    base = first_generation()
    return replace(base, id=id, state=state, created_at=created, retired_at=retired)  # type: ignore[arg-type]


def test_plan_keeps_a_fresh_next_key_waiting() -> None:
    ring = [_gen("a", "active", 0), _gen("b", "next", 100)]
    kept, removed = plan_advance(ring, now=399, propagation_delay=300, lifetime=600)
    assert [(g.id, g.state) for g in kept] == [("a", "active"), ("b", "next")]
    assert removed == []


def test_plan_promotes_after_the_propagation_delay_and_retires_the_old_key() -> None:
    ring = [_gen("a", "active", 0), _gen("b", "next", 100)]
    kept, _ = plan_advance(ring, now=400, propagation_delay=300, lifetime=600)
    assert [(g.id, g.state) for g in kept] == [("a", "retired"), ("b", "active")]
    assert kept[0].retired_at == 400 and kept[1].activated_at == 400


def test_plan_removes_a_retired_key_once_its_tokens_expired() -> None:
    ring = [_gen("a", "retired", 0, retired=1000), _gen("b", "active", 100)]
    assert plan_advance(ring, 1599, 300, 600)[1] == []
    kept, removed = plan_advance(ring, 1600, 300, 600)
    assert removed == ["a"] and [g.id for g in kept] == ["b"]


async def test_first_start_makes_one_active_generation_and_persists_it() -> None:
    store = MemoryOidcStore()
    ring = await KeyRing.load(store, clock=FakeClock(START))
    [info] = ring.list()
    assert info.state == "active"
    assert [g.id for g in store.load_keys()] == [info.id]
    again = await KeyRing.load(store, clock=FakeClock(START))
    assert again.list() == ring.list()


async def test_jwks_is_public_and_kids_are_thumbprints() -> None:
    store = MemoryOidcStore()
    store.save_keys([first_generation()], [])
    ring = await KeyRing.load(store, clock=FakeClock(START))
    keys = ring.jwks()["keys"]
    assert {k["alg"] for k in keys} == {"ES256", "RS256"}
    assert all("d" not in k and "p" not in k for k in keys)
    for key in KeySet.import_key_set(ring.jwks()).keys:
        assert key.kid == key.thumbprint()
    private = ring.signing_key("ES256")
    assert private["alg"] == "ES256" and "d" in private and private["kid"] == keys[0]["kid"]


async def test_rotation_publishes_first_then_signs_then_retires() -> None:
    clock = FakeClock(START)
    store = MemoryOidcStore()
    store.save_keys([first_generation()], [])
    ring = await KeyRing.load(store, clock=clock, propagation_delay=300, lifetime=600)
    changes: list[str] = []
    ring.on_change(lambda: changes.append("changed"))
    old_kid = ring.signing_key()["kid"]
    fresh = await ring.rotate()
    assert fresh.state == "next"
    assert await ring.rotate() == fresh  # one waiting generation at a time
    published = {k["kid"] for k in ring.jwks()["keys"]}
    assert fresh.kids[0] in published and ring.signing_key()["kid"] == old_kid
    await clock.advance(299)
    assert not await ring.advance()
    await clock.advance(1)
    assert await ring.advance()
    assert ring.signing_key()["kid"] == fresh.kids[0]
    token = ring.sign({"sub": "x"})
    assert jwt.decode(token, KeySet.import_key_set(ring.jwks())).header["kid"] == fresh.kids[0]
    assert old_kid in {k["kid"] for k in ring.jwks()["keys"]}  # old tokens still verify
    await clock.advance(600)
    assert await ring.advance()
    assert old_kid not in {k["kid"] for k in ring.jwks()["keys"]}
    assert changes == ["changed"] * 3
    reloaded = await KeyRing.load(store, clock=clock)
    assert [i.id for i in reloaded.list()] == [fresh.id]


async def test_verify_refuses_unsigned_and_foreign_tokens() -> None:
    store = MemoryOidcStore()
    store.save_keys([first_generation()], [])
    ring = await KeyRing.load(store, clock=FakeClock(START))
    token = ring.sign({"sub": "x"}, alg="RS256")
    assert ring.verify(token)[1] == {"sub": "x"}
    _header, payload, _ = token.split(".")
    none = base64.urlsafe_b64encode(json.dumps({"alg": "none"}).encode()).rstrip(b"=").decode()
    hs = base64.urlsafe_b64encode(json.dumps({"alg": "HS256"}).encode()).rstrip(b"=").decode()
    for forged in (
        f"{none}.{payload}.",
        f"{hs}.{payload}.AAAA",
        "not.a.token",
        token[:-4] + "AAAA",
    ):
        with pytest.raises(ValueError):
            ring.verify(forged)
