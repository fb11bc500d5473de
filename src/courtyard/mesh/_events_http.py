"""The event bus's two HTTP edges: pushing a CloudEvent to a subscriber through the mesh
listener, and checking the ``Courtyard-Identity`` the mesh put on a publish.

Both go through the mesh on purpose: the listener enforces who may reach whom, so the control
plane never opens a side door into an app nor takes a publish the mesh has not vouched for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeGuard

import httpx

from courtyard.contracts import DEADLINE_HEADER
from courtyard.core import Clock, SystemClock
from courtyard.mesh._events import CLOUDEVENTS_JSON, EVENTS_APP

_DRAIN_BYTES = 64 * 1024  # of a subscriber's answer read (to reuse the connection), at most


class HttpMeshSender:
    """A :class:`DeliverySender` that POSTs each CloudEvent (structured mode,
    ``application/cloudevents+json``, CloudEvents HTTP binding §3.2) to
    ``{mesh_url}/{subscriber}{handler}`` with the control plane's workload credential.

    ``credential`` returns the current credential (it rotates); ``Courtyard-Deadline`` tells
    the mesh and the subscriber when the bus stops waiting.
    """

    def __init__(
        self,
        mesh_url: str,
        credential: Callable[[], str],
        *,
        timeout: float = 10.0,
        clock: Clock | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._url = mesh_url.rstrip("/")
        self._credential = credential
        self._timeout = timeout
        self._clock = clock if clock is not None else SystemClock()
        # trust_env off: a proxy from the environment must never sit between us and loopback.
        self._http = httpx.AsyncClient(
            timeout=timeout, trust_env=False, follow_redirects=False, transport=transport
        )

    async def send(self, subscriber: str, handler: str, cloudevent: str) -> int:
        deadline = int((self._clock.time() + self._timeout) * 1000)
        headers = {
            "Content-Type": CLOUDEVENTS_JSON,
            "Authorization": f"Bearer {self._credential()}",
            DEADLINE_HEADER: str(deadline),
        }
        request = self._http.build_request(
            "POST",
            f"{self._url}/{subscriber}{handler}",
            content=cloudevent.encode("utf-8"),
            headers=headers,
        )
        response = await self._http.send(request, stream=True)
        try:
            read = 0
            async for chunk in response.aiter_raw():
                read += len(chunk)
                if read > _DRAIN_BYTES:
                    break
        finally:
            await response.aclose()
        return response.status_code

    async def aclose(self) -> None:
        await self._http.aclose()


class AssertionVerifier(Protocol):
    """Checks a ``Courtyard-Identity`` assertion; its claims, or ValueError saying why not."""

    def verify(self, token: str) -> dict[str, Any]: ...


class SigningKeys(Protocol):
    """The key ring's verification (courtyard.iam.KeyRing.verify): the signature against the
    published JWKS with joserfc, ES256/RS256 only; (header, claims) or ValueError."""

    def verify(self, token: str) -> tuple[dict[str, Any], dict[str, Any]]: ...


class IdentityAssertionVerifier:
    """An :class:`AssertionVerifier` for assertions the gateway signed for the control plane.

    Checks (RFC 8725 §3.1-3.3, 3.9): ``alg`` ES256 and ``typ`` JWT (the assertion's, never
    ``none``), the signature against the key ring, ``iss``, ``aud`` == ``audience`` and
    ``exp`` (with a small leeway for clock skew between processes).
    """

    def __init__(
        self,
        keys: SigningKeys,
        issuer: str,
        *,
        audience: str = EVENTS_APP,
        clock: Clock | None = None,
        leeway: float = 5.0,
    ) -> None:
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._clock = clock if clock is not None else SystemClock()
        self._leeway = leeway

    def verify(self, token: str) -> dict[str, Any]:
        header, claims = self._keys.verify(token)
        if header.get("alg") != "ES256" or header.get("typ") != "JWT":
            raise ValueError("not an identity assertion (alg, typ)")
        if claims.get("iss") != self._issuer:
            raise ValueError("wrong issuer")
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if self._audience not in audiences:
            raise ValueError("issued for another audience")
        now = self._clock.time()
        expires, issued = claims.get("exp"), claims.get("iat", now)
        if not _is_number(expires) or expires + self._leeway <= now:
            raise ValueError("expired")
        if not _is_number(issued) or issued - self._leeway > now:
            raise ValueError("issued in the future")
        return claims


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)
