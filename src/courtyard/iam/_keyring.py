"""The signing key ring: generations of (EC P-256, RSA-2048) keys that are published, then
sign, then retire, so verifiers that cache the JWKS never see a token signed by an unknown key.

Lifecycle of a generation: ``next`` (in the JWKS, not signing) -> ``active`` (signs) ->
``retired`` (in the JWKS until every token it signed has expired) -> removed. All JOSE work is
joserfc's; key ids are RFC 7638 thumbprints.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, RSAKey

from courtyard.core import Clock, SystemClock

KeyState = Literal["next", "active", "retired"]
SigningAlg = Literal["ES256", "RS256"]
ALGORITHMS: tuple[SigningAlg, ...] = ("ES256", "RS256")


@dataclass(frozen=True)
class KeyGeneration:
    """One generation: an EC P-256 key (ES256) and an RSA-2048 key (RS256), private JWKs.

    ``id`` is the EC key's kid. ``created_at`` is also when it was first published.
    """

    id: str
    state: KeyState
    ec_jwk: dict[str, Any]
    rsa_jwk: dict[str, Any]
    created_at: float
    activated_at: float | None = None
    retired_at: float | None = None


@dataclass(frozen=True)
class KeyInfo:
    """A generation as admins see it (no private material)."""

    id: str
    state: KeyState
    kids: tuple[str, str]  # (ES256 kid, RS256 kid)
    created_at: float
    activated_at: float | None
    retired_at: float | None
    remove_at: float | None  # when a retired generation leaves the JWKS


class SigningKeyStore(Protocol):
    """Where generations persist (part of :class:`courtyard.iam.OidcStore`)."""

    def load_keys(self) -> list[KeyGeneration]:
        """Every stored generation, oldest first."""
        ...

    def save_keys(self, keys: Sequence[KeyGeneration], removed: Sequence[str]) -> None:
        """Upsert ``keys`` and delete the generations ``removed``, in one step."""
        ...


def new_generation(now: float, state: KeyState = "next") -> KeyGeneration:
    """Fresh keys: kid = RFC 7638 thumbprint; ``alg`` and ``use`` set (RFC 7517 §4.2, §4.4)."""
    ec = ECKey.generate_key("P-256", parameters={"alg": "ES256", "use": "sig"}, auto_kid=True)
    rsa = RSAKey.generate_key(2048, parameters={"alg": "RS256", "use": "sig"}, auto_kid=True)
    return KeyGeneration(
        id=ec.kid or ec.thumbprint(),
        state=state,
        ec_jwk=dict(ec.as_dict(private=True)),
        rsa_jwk=dict(rsa.as_dict(private=True)),
        created_at=now,
        activated_at=now if state == "active" else None,
    )


def plan_advance(
    generations: Sequence[KeyGeneration], now: float, propagation_delay: float, lifetime: float
) -> tuple[list[KeyGeneration], list[str]]:
    """The ring after time ``now``: (generations kept, ids removed). Pure.

    A ``next`` generation published for ``propagation_delay`` becomes active and the active one
    retires; a retired one is removed once ``lifetime`` (the longest token life) has passed.
    """
    ready = [
        g for g in generations if g.state == "next" and g.created_at + propagation_delay <= now
    ]
    promoted = ready[-1].id if ready else None
    kept: list[KeyGeneration] = []
    removed: list[str] = []
    for current in generations:
        generation = current
        if promoted is not None and current.state == "active":
            generation = replace(current, state="retired", retired_at=now)
        elif current.id == promoted:
            generation = replace(current, state="active", activated_at=now)
        if (
            generation.state == "retired"
            and generation.retired_at is not None
            and generation.retired_at + lifetime <= now
        ):
            removed.append(generation.id)
            continue
        kept.append(generation)
    return kept, removed


def key_info(generation: KeyGeneration, lifetime: float) -> KeyInfo:
    """The admin view of ``generation``."""
    retired = generation.retired_at
    return KeyInfo(
        id=generation.id,
        state=generation.state,
        kids=(str(generation.ec_jwk["kid"]), str(generation.rsa_jwk["kid"])),
        created_at=generation.created_at,
        activated_at=generation.activated_at,
        retired_at=retired,
        remove_at=retired + lifetime if retired is not None else None,
    )


class KeyRing:
    """The provider's signing keys, loaded from a :class:`SigningKeyStore`.

    Build one with :meth:`load`. Reads (:meth:`jwks`, :meth:`signing_key`, :meth:`sign`,
    :meth:`verify`) are synchronous and cheap; changes are async and persist first.
    """

    def __init__(
        self,
        store: SigningKeyStore,
        generations: Sequence[KeyGeneration],
        *,
        clock: Clock,
        propagation_delay: float,
        lifetime: float,
    ) -> None:
        self._store = store
        self._clock = clock
        self._delay = propagation_delay
        self._lifetime = lifetime
        self._lock = asyncio.Lock()
        self._listeners: list[Callable[[], None]] = []
        self._install(list(generations))

    @classmethod
    async def load(
        cls,
        store: SigningKeyStore,
        *,
        clock: Clock | None = None,
        propagation_delay: float = 300,
        lifetime: float = 600,
    ) -> KeyRing:
        """The stored ring; on first start, one new active generation (saved before use)."""
        clock = clock or SystemClock()
        generations = await asyncio.to_thread(store.load_keys)
        if not any(g.state == "active" for g in generations):
            first = await asyncio.to_thread(new_generation, clock.time(), "active")
            await asyncio.to_thread(store.save_keys, [first], [])
            generations = [*generations, first]
        return cls(
            store, generations, clock=clock, propagation_delay=propagation_delay, lifetime=lifetime
        )

    def _install(self, generations: list[KeyGeneration]) -> None:
        active = [g for g in generations if g.state == "active"]
        if not active:
            raise ValueError("a key ring needs an active generation")
        self._generations = generations
        self._active = active[-1]
        self._signers: dict[str, ECKey | RSAKey] = {
            "ES256": ECKey.import_key(self._active.ec_jwk),
            "RS256": RSAKey.import_key(self._active.rsa_jwk),
        }
        public = [
            {**key, "alg": alg, "use": "sig"}
            for g in generations
            for key, alg in ((g.ec_jwk, "ES256"), (g.rsa_jwk, "RS256"))
        ]
        self._jwks = {"keys": [_public_jwk(key) for key in public]}
        self._verifier = KeySet.import_key_set(self._jwks)  # type: ignore[arg-type]

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every change of the published or signing keys."""
        self._listeners.append(listener)

    @property
    def propagation_delay(self) -> float:
        return self._delay

    def jwks(self) -> dict[str, Any]:
        """The public JWK Set (RFC 7517 §5): every next, active and retired key."""
        return {"keys": [dict(key) for key in self._jwks["keys"]]}

    def signing_key(self, alg: SigningAlg = "ES256") -> dict[str, Any]:
        """The active private JWK for ``alg`` (with kid and alg), e.g. for gateway assertions."""
        key = self._active.ec_jwk if alg == "ES256" else self._active.rsa_jwk
        return {**key, "alg": alg}

    def list(self) -> list[KeyInfo]:
        """Every generation, oldest first."""
        return [key_info(g, self._lifetime) for g in self._generations]

    def sign(self, claims: dict[str, Any], *, alg: SigningAlg = "ES256", typ: str = "JWT") -> str:
        """A compact JWS of ``claims`` signed by the active key for ``alg``."""
        key = self._signers[alg]
        header = {"alg": alg, "typ": typ, "kid": key.kid}
        return jwt.encode(header, claims, key, algorithms=[alg])

    def verify(self, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """(header, claims) of a JWT signed by a published key; raises ValueError otherwise.

        Only ES256/RS256 are accepted (never ``none`` or HS*, RFC 8725 §3.1); claims are not
        checked here.
        """
        try:
            token_obj = jwt.decode(token, self._verifier, algorithms=list(ALGORITHMS))
        except (JoseError, ValueError, TypeError) as exc:
            raise ValueError(f"not a token we signed: {exc}") from None
        return dict(token_obj.header), dict(token_obj.claims)

    async def rotate(self) -> KeyInfo:
        """Publish a new ``next`` generation (or return the one already waiting).

        It starts signing at :meth:`advance` once ``propagation_delay`` has passed.
        """
        async with self._lock:
            waiting = [g for g in self._generations if g.state == "next"]
            if waiting:
                return key_info(waiting[-1], self._lifetime)
            fresh = await asyncio.to_thread(new_generation, self._clock.time())
            await asyncio.to_thread(self._store.save_keys, [fresh], [])
            self._install([*self._generations, fresh])
        self._notify()
        return key_info(fresh, self._lifetime)

    async def advance(self) -> bool:
        """Promote a propagated ``next`` key and drop expired retired ones; True if changed."""
        async with self._lock:
            kept, removed = plan_advance(
                self._generations, self._clock.time(), self._delay, self._lifetime
            )
            if kept == self._generations and not removed:
                return False
            changed = [g for g in kept if g not in self._generations]
            await asyncio.to_thread(self._store.save_keys, changed, removed)
            self._install(kept)
        self._notify()
        return True

    def _notify(self) -> None:
        for listener in list(self._listeners):
            listener()


def _public_jwk(key: dict[str, Any]) -> dict[str, Any]:
    kind = ECKey if key["kty"] == "EC" else RSAKey
    public = dict(kind.import_key(key).as_dict(private=False))
    public.update({"kid": key["kid"], "alg": key["alg"], "use": "sig"})
    return public
