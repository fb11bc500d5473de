"""The mesh's authenticate-and-authorize step: who calls (a workload credential from the
worker's table, nothing else), whether the catalog allows the call (``contracts.call_refusal``,
default deny) and what the target is told (``Courtyard-Identity`` with ``act``).

Pure apart from the tables it reads and the usage it records: the connection in
``_mesh_proxy`` turns its verdicts into answers and reuses the proxy engine to forward.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, NamedTuple

from courtyard.contracts import (
    TRACES_SERVICE,
    AccessDenial,
    GatewayAuth,
    GatewaySnapshot,
    IdentityClaims,
    MeshPolicy,
    MeshSettings,
    call_refusal,
    path_matches,
    publish_refusal,
    spiffe_id,
)
from courtyard.gateway._access import bearer_token
from courtyard.gateway._credentials import Caller, credential_key
from courtyard.gateway._onbehalf import OnBehalf, OnBehalfVerifier
from courtyard.gateway._routing import RouteEntry

if TYPE_CHECKING:
    from courtyard.gateway._access import AccessGate
    from courtyard.gateway._exchange import Exchange

# Used when an app has no public route to take its limits from (the manifest's defaults).
DEFAULT_CONNECT_TIMEOUT = 2.0
DEFAULT_RESPONSE_TIMEOUT = 60.0
DEFAULT_MAX_BODY = 10 * 2**20

EVENTS_SERVICE = "_events"  # {MESH}/_events/<topic> (contracts.EVENTS_PREFIX)
_WORKLOAD = "workload"
# RFC 6750 §3: the mesh's challenge; error="invalid_token" (§3.1) for a presented credential.
_CHALLENGE = b'WWW-Authenticate: Bearer realm="courtyard-mesh"\r\n'
_CHALLENGE_INVALID = b'WWW-Authenticate: Bearer realm="courtyard-mesh", error="invalid_token"\r\n'
_ALLOW_POST = b"Allow: POST\r\n"


class Refusal(NamedTuple):
    """An answer the mesh gives itself instead of forwarding."""

    status: int
    detail: str
    extra: bytes = b""


class MeshGate:
    """One worker's mesh tables, compiled per snapshot: policies, limits and settings."""

    __slots__ = (
        "_auth",
        "apps",
        "entries",
        "events_entry",
        "events_path",
        "handlers",
        "policies",
        "selves",
        "settings",
        "verifier",
    )

    def __init__(self) -> None:
        self.settings: MeshSettings | None = None
        self.apps: frozenset[str] = frozenset()
        self.policies: dict[str, MeshPolicy] = {}
        self.entries: dict[str, RouteEntry] = {}  # app -> limits of a call to it
        self.handlers: dict[str, list[str]] = {}  # app -> its subscription handler paths
        self.selves: dict[str, IdentityClaims] = {}  # app -> claims naming its workload
        self.events_entry: RouteEntry | None = None  # limits of a publish
        self.events_path = b""
        self.verifier: OnBehalfVerifier | None = None
        self._auth: GatewayAuth | None = None

    def apply_snapshot(self, snapshot: GatewaySnapshot) -> None:
        """Take the snapshot's mesh policies and settings (shapes are checked beforehand)."""
        settings = snapshot.get("mesh")
        auth = snapshot.get("auth")
        if auth != self._auth:
            self.verifier = OnBehalfVerifier(auth) if auth is not None else None
            self._auth = auth
        limits: dict[str, tuple[int, float, float]] = {}
        for route in snapshot["routes"]:
            limits.setdefault(
                route["app"],
                (route["max_body_bytes"], route["connect_timeout"], route["response_timeout"]),
            )
        default = (DEFAULT_MAX_BODY, DEFAULT_CONNECT_TIMEOUT, DEFAULT_RESPONSE_TIMEOUT)
        entries: dict[str, RouteEntry] = {}
        policies: dict[str, MeshPolicy] = {}
        handlers: dict[str, list[str]] = {}
        for name, upstream in snapshot["apps"].items():
            body, connect, response = limits.get(name, default)
            prefix = b"/" + name.encode() + b"/"
            entries[name] = RouteEntry(
                app=name,
                prefix=prefix,
                host=None,
                strip_prefix=True,
                max_body_bytes=body,
                connect_timeout=connect,
                response_timeout=response,
                prefix_header=b"X-Forwarded-Prefix: " + prefix[:-1] + b"\r\n",
            )
            policy = upstream.get("mesh")
            if policy is not None:
                policies[name] = policy
                handlers[name] = [item["handler"] for item in policy["subscribes"]]
        self.apps = frozenset(snapshot["apps"])
        self.entries = entries
        self.policies = policies
        self.handlers = handlers
        self.settings = settings
        self.events_path = settings["events_path"].encode() if settings is not None else b""
        events = entries.get(settings["events_app"]) if settings is not None else None
        # The events app routes by its own path: nothing is stripped for it.
        self.events_entry = replace(events, prefix_header=b"") if events is not None else None
        self.selves = {}

    # -- the verdict -----------------------------------------------------------------------

    def decide(
        self,
        ex: Exchange,
        access: AccessGate,
        path: bytes,
        query: bytes,
        on_behalf: bytes | None,
        wall: float,
        client: bytes,
    ) -> tuple[RouteEntry, bytes] | Refusal:
        """Where a mesh request goes ((limits, upstream target)) or why it goes nowhere.

        Sets the exchange's ``Courtyard-Identity`` line; records denials and used edges.
        """
        settings = self.settings
        signer = access.signer
        if settings is None or signer is None:
            return Refusal(503, "the mesh is not configured yet", b"Retry-After: 1\r\n")
        service, _, rest = path[1:].partition(b"/")
        name = service.decode("latin-1")
        if name in self.apps:
            ex.app = name  # metrics and the access log; unknown names stay "-" (bounded)
        rest = b"/" + rest
        caller = self._authenticate(ex, access, wall)
        if isinstance(caller, str):
            target = settings["events_app"] if name == EVENTS_SERVICE else name or "-"
            self._deny(access, ex, target, 401, caller, "-", client)
            invalid = ex.authorization is not None
            detail = "a valid workload credential is required (Authorization: Bearer)"
            return Refusal(401, detail, _CHALLENGE_INVALID if invalid else _CHALLENGE)
        app = caller.app
        assert app is not None
        ex.caller = app
        actor = spiffe_id(settings["trust_domain"], app)
        if name == TRACES_SERVICE:
            return self._traces(ex, access, caller, actor, rest, query, wall)
        if name == EVENTS_SERVICE:
            return self._publish(ex, access, caller, actor, rest, query, wall, client)
        if name not in self.apps:
            return Refusal(404, f"no service named {name or '(none)'}; call /<service>/<path>")
        method = ex.method.decode("latin-1")
        target_path = rest.decode("latin-1")
        if app == settings["events_app"]:
            # The control plane delivers events: only to handlers the target subscribed with.
            handlers = self.handlers.get(name, [])
            if method == "POST" and path_matches(handlers, target_path):
                reason = None
            else:
                reason = f"{app} delivers events only to {name}'s subscription handlers"
        else:
            reason = call_refusal(
                app, self.policies.get(app), name, self.policies.get(name), method, target_path
            )
        if reason is not None:
            self._deny(access, ex, name, 403, reason, actor, client)
            return Refusal(403, f"{app} may not call {method} {target_path} on {name}")
        claims, until, key = self._self(app, actor), caller.expires_at, ""
        if on_behalf is not None and self.verifier is not None:
            user = self.verifier.check(on_behalf, app, wall)
            if isinstance(user, OnBehalf):
                claims, until = user.claims, min(until, user.expires_at)
                key = on_behalf.decode("latin-1")
        ex.identity_line = signer.mesh_line(
            caller, claims, actor, name, wall, until=until, on_behalf=key
        )
        if app != settings["events_app"]:
            # Deliveries are the control plane's own record; edges are the apps' calls.
            access.usage.edges.add(app + ">" + name)
        return self.entries[name], rest + query

    def _publish(
        self,
        ex: Exchange,
        access: AccessGate,
        caller: Caller,
        actor: str,
        rest: bytes,
        query: bytes,
        wall: float,
        client: bytes,
    ) -> tuple[RouteEntry, bytes] | Refusal:
        """``POST /_events/<topic>``: to the events app at ``events_path + topic``."""
        settings = self.settings
        signer = access.signer
        assert settings is not None and signer is not None and caller.app is not None
        app = caller.app
        events_app = settings["events_app"]
        ex.app = events_app
        topic = rest[1:].decode("latin-1")
        if not topic or "/" in topic:
            return Refusal(404, "publish to /_events/<topic>")
        if ex.method != b"POST":
            return Refusal(405, "events are published with POST", _ALLOW_POST)
        reason = publish_refusal(app, self.policies.get(app), topic)
        if reason is not None:
            self._deny(access, ex, events_app, 403, reason, actor, client)
            return Refusal(403, f"{app} may not publish to {topic}")
        entry = self.events_entry
        if entry is None:
            return Refusal(503, "the events service is not available", b"Retry-After: 1\r\n")
        ex.identity_line = signer.mesh_line(
            caller, self._self(app, actor), actor, events_app, wall, until=caller.expires_at
        )
        access.usage.edges.add(f"{app}>{EVENTS_SERVICE}/{topic}")
        return entry, self.events_path + rest[1:] + query

    def _traces(
        self,
        ex: Exchange,
        access: AccessGate,
        caller: Caller,
        actor: str,
        rest: bytes,
        query: bytes,
        wall: float,
    ) -> tuple[RouteEntry, bytes] | Refusal:
        """``POST /_traces``: an app's finished spans, to the control plane's trace store.
        Any authenticated workload may report its own spans (the store names them after the
        caller); the report itself is not traced."""
        settings = self.settings
        signer = access.signer
        assert settings is not None and signer is not None and caller.app is not None
        ex.app = TRACES_SERVICE
        ex.traced = False
        path = settings.get("traces_path")
        entry = self.events_entry
        if path is None or entry is None:
            return Refusal(404, "this node keeps no traces")
        if rest != b"/":
            return Refusal(404, "report spans to /_traces")
        if ex.method != b"POST":
            return Refusal(405, "spans are reported with POST", _ALLOW_POST)
        events_app = settings["events_app"]
        ex.identity_line = signer.mesh_line(
            caller, self._self(caller.app, actor), actor, events_app, wall, until=caller.expires_at
        )
        return entry, path.encode("latin-1") + query

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _authenticate(ex: Exchange, access: AccessGate, wall: float) -> Caller | str:
        """The workload behind the request's bearer credential, or why there is none.

        Only the credential table counts: access tokens, assertions and forged or stale
        workload tokens are all unknown keys there.
        """
        authorization = ex.authorization
        if authorization is None:
            return "no workload credential"
        token = bearer_token(authorization)
        if token is None:
            return "not a bearer credential"
        found = access.credentials.find(credential_key(token), wall)
        if found is None:
            return "unknown workload credential"
        if isinstance(found, str):
            return found
        if found.kind != _WORKLOAD:
            return f"a {found.kind} credential is not a workload credential"
        if not found.app:
            return "workload credential names no app"
        return found

    def _self(self, app: str, actor: str) -> IdentityClaims:
        """The claims naming ``app``'s own workload (no end user behind the call)."""
        claims = self.selves.get(app)
        if claims is None:
            claims = self.selves[app] = IdentityClaims(
                sub=actor, email="", name=app, groups=[], roles=[]
            )
        return claims

    @staticmethod
    def _deny(
        access: AccessGate,
        ex: Exchange,
        app: str,
        status: int,
        reason: str,
        subject: str,
        client: bytes,
    ) -> None:
        access.usage.deny(
            AccessDenial(
                app=app,
                status=status,
                reason=reason,
                subject=subject,
                method=ex.method.decode("latin-1"),
                path=ex.path.decode("latin-1"),
                request_id=(ex.request_id or b"").decode("latin-1"),
                client=client.decode("latin-1"),
            )
        )
