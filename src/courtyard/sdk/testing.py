"""Test kit for app authors: mint ``Courtyard-Identity`` assertions with a key of your own and
verify them with a matching verifier, and stand a :class:`FakeMesh` in for the platform's mesh,
so an app's tests need no running platform.

    minter = IdentityMinter(audience="expenses")
    app = create_app(verifier=minter.verifier())
    client.get("/", headers=minter.headers(name="Dana", groups=["finance"]))
    client.post("/events/paid", **minter.event_request("invoice.paid", {"invoice": 7}))

    mesh = FakeMesh(app="expenses")
    mesh.respond("ledger", "/entries", "POST", status=201, json={"id": "e_1"})
    create_app(mesh=mesh.client())
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from courtyard.contracts import (
    DEADLINE_HEADER,
    DEFAULT_TRUST_DOMAIN,
    EVENTS_PREFIX,
    IDENTITY_HEADER,
    ON_BEHALF_OF_HEADER,
    MeshCall,
    MeshPolicy,
    call_refusal,
    method_matches,
    path_matches,
    publish_refusal,
    spiffe_id,
)
from courtyard.sdk._events import CLOUDEVENTS_JSON, DEFAULT_EVENTS_IDENTITY, EVENTS_APP
from courtyard.sdk._jwks import StaticJwks
from courtyard.sdk._mesh import EVENT_ID_HEADER, AsyncMeshClient, MeshClient
from courtyard.sdk._verifier import IdentityVerifier

__all__ = [
    "DEFAULT_AUDIENCE",
    "DEFAULT_ISSUER",
    "FakeMesh",
    "IdentityMinter",
    "ManualClock",
    "RecordedCall",
    "RecordedEvent",
    "cloud_event",
]

DEFAULT_ISSUER = "http://courtyard.test"
DEFAULT_AUDIENCE = "app"


class ManualClock:
    """A wall clock (seconds since the epoch) that moves only when a test calls
    :meth:`advance`: pass it as ``clock`` to the minter and the verifier to test expiry
    without sleeping."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class IdentityMinter:
    """Signs assertions as the platform would, with a key generated for this minter.

    ``clock`` (seconds since the epoch) sets ``iat``; share it with the verifier to test
    expiry without sleeping.
    """

    def __init__(
        self,
        issuer: str = DEFAULT_ISSUER,
        audience: str = DEFAULT_AUDIENCE,
        *,
        alg: Literal["ES256", "RS256"] = "ES256",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.alg = alg
        self._clock = clock
        key: ECKey | RSAKey = (
            ECKey.generate_key("P-256", auto_kid=True)
            if alg == "ES256"
            else RSAKey.generate_key(2048, auto_kid=True)
        )
        self.key = key

    @property
    def kid(self) -> str:
        """The key id (RFC 7638 thumbprint) every minted assertion names."""
        return str(self.key.kid)

    def mint(
        self,
        sub: str = "u_test",
        email: str = "test@example.com",
        name: str = "Test User",
        groups: Iterable[str] = (),
        roles: Iterable[str] = (),
        *,
        aud: str | None = None,
        ttl: int = 60,
        act: str | None = None,
        **extra: Any,
    ) -> str:
        """A signed assertion; ``act`` names the calling service of a mesh call, ``extra``
        adds or overrides claims (``iss``, ``iat``, ``exp``, anything)."""
        iat = int(self._clock())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience if aud is None else aud,
            "iat": iat,
            "exp": iat + ttl,
            "sub": sub,
            "email": email,
            "name": name,
            "groups": list(groups),
            "roles": list(roles),
        }
        if act is not None:
            claims["act"] = {"sub": act}
        claims.update(extra)
        return self.sign(claims)

    def sign(self, claims: Mapping[str, Any], header: Mapping[str, Any] | None = None) -> str:
        """Sign exactly ``claims`` (and ``header`` over the default one): for testing that an
        app refuses odd assertions."""
        full = {"alg": self.alg, "typ": "JWT", "kid": self.kid, **(header or {})}
        return jwt.encode(full, dict(claims), self.key, algorithms=[str(full["alg"])])

    def headers(self, **claims: Any) -> dict[str, str]:
        """``{"Courtyard-Identity": <assertion>}``; ``claims`` as for :meth:`mint`."""
        return {IDENTITY_HEADER: self.mint(**claims)}

    def mesh_headers(
        self, caller: str, *, trust_domain: str = DEFAULT_TRUST_DOMAIN, **claims: Any
    ) -> dict[str, str]:
        """The assertion the mesh forwards on a call from the app ``caller``: ``act`` is its
        SPIFFE ID; ``sub`` is that too (a call on nobody's behalf) unless ``claims`` name the
        end user (``sub=``, ``email=``, …)."""
        actor = spiffe_id(trust_domain, caller)
        if "sub" not in claims:
            claims = {"sub": actor, "email": "", "name": caller, **claims}
        return {IDENTITY_HEADER: self.mint(act=actor, **claims)}

    def event_request(
        self,
        topic: str,
        data: Any = None,
        *,
        publisher: str = "publisher",
        id: str | None = None,
        events_identity: str = DEFAULT_EVENTS_IDENTITY,
        trust_domain: str = DEFAULT_TRUST_DOMAIN,
    ) -> dict[str, Any]:
        """``content`` and ``headers`` of a delivery as the platform's event bus makes it: a
        CloudEvents JSON body and an assertion with ``act`` = ``events_identity``. Use as
        ``client.post(handler_path, **minter.event_request("topic", {...}))``."""
        event = cloud_event(
            topic,
            data,
            publisher=publisher,
            id=id,
            trust_domain=trust_domain,
            time=datetime.fromtimestamp(self._clock(), UTC),
        )
        headers = {
            IDENTITY_HEADER: self.mint(
                sub=events_identity, email="", name=EVENTS_APP, act=events_identity
            ),
            "Content-Type": CLOUDEVENTS_JSON,
        }
        return {"content": json.dumps(event).encode(), "headers": headers}

    def jwks(self) -> dict[str, Any]:
        """The public JWKS (RFC 7517 §5) the assertions verify against: serve it at
        ``{issuer}/oauth2/jwks`` to test an app that fetches it."""
        public = self.key.as_dict(private=False)
        return {"keys": [{**public, "kid": self.kid, "alg": self.alg, "use": "sig"}]}

    def verifier(self, audience: str | None = None, **options: Any) -> IdentityVerifier:
        """A verifier that trusts this minter's key alone (an in-memory JWKS, no fetching)."""
        options.setdefault("clock", self._clock)
        return IdentityVerifier(
            self.issuer,
            self.audience if audience is None else audience,
            jwks=StaticJwks(self.jwks()),
            **options,
        )


def cloud_event(
    topic: str,
    data: Any = None,
    *,
    publisher: str = "publisher",
    id: str | None = None,
    trust_domain: str = DEFAULT_TRUST_DOMAIN,
    time: datetime | None = None,
) -> dict[str, Any]:
    """A CloudEvents 1.0 JSON document (structured mode) as the platform delivers it."""
    when = time or datetime.now(UTC)
    return {
        "specversion": "1.0",
        "id": id or str(uuid.uuid4()),
        "source": spiffe_id(trust_domain, publisher),
        "type": topic,
        "time": when.isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": data,
    }


@dataclass(frozen=True)
class RecordedCall:
    """A call an app made through a :class:`FakeMesh`."""

    service: str
    method: str
    path: str
    params: Mapping[str, str]
    headers: Mapping[str, str] = field(repr=False)  # lower-case names
    content: bytes = field(repr=False)
    on_behalf_of: str | None = field(default=None, repr=False)
    deadline: int | None = None  # Courtyard-Deadline, ms since the epoch

    def json(self) -> Any:
        """The request body, parsed as JSON."""
        return json.loads(self.content)


@dataclass(frozen=True)
class RecordedEvent:
    """An event an app published through a :class:`FakeMesh`."""

    topic: str
    data: Any
    id: str


Responder = Callable[[httpx.Request], httpx.Response]


class FakeMesh:
    """The platform's mesh, in memory: clients from :meth:`client` / :meth:`async_client` reach
    it through an ``httpx.MockTransport``, so the app's real :class:`MeshClient` code runs.

    Every call and publish is recorded (:attr:`calls`, :attr:`published`). Calls get the
    answers registered with :meth:`respond` or :meth:`route` (the latest that matches wins),
    else 404. Give ``consumes`` and ``publishes`` (as in the app's manifest) and undeclared
    calls and topics are refused with 403, as the real mesh would (default deny).
    """

    URL = "http://mesh.test"
    TOKEN = "fake-workload-credential"  # noqa: S105 - a placeholder, not a secret

    def __init__(
        self,
        *,
        app: str = "app",
        consumes: Iterable[MeshCall] | None = None,
        publishes: Iterable[str] | None = None,
    ) -> None:
        self.app = app
        self.calls: list[RecordedCall] = []
        self.published: list[RecordedEvent] = []
        self._consumes = list(consumes) if consumes is not None else None
        self._publishes = list(publishes) if publishes is not None else None
        self._routes: list[tuple[str, list[str], list[str], Responder]] = []
        self.transport = httpx.MockTransport(self._handle)

    def client(self, **options: Any) -> MeshClient:
        """A :class:`MeshClient` wired to this fake."""
        return MeshClient(self.URL, self.TOKEN, transport=self.transport, **options)

    def async_client(self, **options: Any) -> AsyncMeshClient:
        """An :class:`AsyncMeshClient` wired to this fake."""
        return AsyncMeshClient(self.URL, self.TOKEN, transport=self.transport, **options)

    def respond(
        self,
        service: str,
        path: str = "/**",
        method: str = "*",
        *,
        status: int = 200,
        json: Any = None,
        content: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer calls to ``service`` whose path matches the glob ``path`` (``*`` one segment,
        ``**`` any) and whose method is ``method`` (or any, ``*``) with a canned response."""

        def canned(_: httpx.Request) -> httpx.Response:
            return httpx.Response(status, json=json, content=content, headers=headers)

        self.route(service, canned, path=path, method=method)

    def route(
        self, service: str, responder: Responder, *, path: str = "/**", method: str = "*"
    ) -> None:
        """Answer matching calls with ``responder(request)``; the request's URL path is the
        target's own path (without ``/<service>``)."""
        self._routes.append((service, [path], [method.upper()], responder))

    def calls_to(self, service: str) -> list[RecordedCall]:
        """The recorded calls to ``service``, oldest first."""
        return [call for call in self.calls if call.service == service]

    def _handle(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") != f"Bearer {self.TOKEN}":
            return _problem(401, "no workload credential")
        raw_path = request.url.path
        if raw_path.startswith(EVENTS_PREFIX):
            return self._publish(request, raw_path[len(EVENTS_PREFIX) :])
        service, _, rest = raw_path.lstrip("/").partition("/")
        path = "/" + rest
        deadline = request.headers.get(DEADLINE_HEADER)
        self.calls.append(
            RecordedCall(
                service=service,
                method=request.method,
                path=path,
                params=dict(request.url.params),
                headers=dict(request.headers),
                content=request.read(),
                on_behalf_of=request.headers.get(ON_BEHALF_OF_HEADER),
                deadline=int(deadline) if deadline and deadline.isdigit() else None,
            )
        )
        if self._consumes is not None:
            mine = _policy(consumes=self._consumes)
            reason = call_refusal(self.app, mine, service, _policy(), request.method, path)
            if reason is not None:
                return _problem(403, reason)
        for target, paths, methods, responder in reversed(self._routes):
            matches = method_matches(methods, request.method) and path_matches(paths, path)
            if target == service and matches:
                forwarded = httpx.Request(
                    request.method,
                    request.url.copy_with(path=path),
                    headers=request.headers,
                    content=request.content,
                )
                return responder(forwarded)
        return _problem(
            404, f"FakeMesh has no answer for {request.method} {service} {path} (respond())"
        )

    def _publish(self, request: httpx.Request, topic: str) -> httpx.Response:
        if request.method != "POST":
            return _problem(405, "events are published with POST")
        if self._publishes is not None:
            reason = publish_refusal(self.app, _policy(publishes=self._publishes), topic)
            if reason is not None:
                return _problem(403, reason)
        event_id = request.headers.get(EVENT_ID_HEADER) or str(uuid.uuid4())
        data = json.loads(request.read()) if request.content else None
        self.published.append(RecordedEvent(topic=topic, data=data, id=event_id))
        return httpx.Response(202, json={"id": event_id})


def _policy(
    *, consumes: list[MeshCall] | None = None, publishes: list[str] | None = None
) -> MeshPolicy:
    return MeshPolicy(
        consumes=consumes or [], accepts=None, publishes=publishes or [], subscribes=[]
    )


def _problem(status: int, detail: str) -> httpx.Response:
    titles = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed"}
    return httpx.Response(
        status,
        json={"type": "about:blank", "title": titles[status], "status": status, "detail": detail},
        headers={"Content-Type": "application/problem+json"},
    )
