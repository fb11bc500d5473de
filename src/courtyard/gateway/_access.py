"""Who may pass: the gateway's authenticate-and-authorize step, run for every routed request
(DESIGN.md, "Identity to apps"). It reads the caller's session cookie or bearer credential,
decides by the app's access policy (default deny) and picks the lines the app may see.

Everything is local to the worker: credentials come from the control plane's messages,
access tokens verify against the snapshot's JWKS, and results are cached so a repeat caller
costs a few dictionary probes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast
from urllib.parse import quote

from courtyard.contracts import (
    AccessDenial,
    AccessPolicy,
    CredentialsMessage,
    GatewayAuth,
    GatewaySnapshot,
    admitting_rule,
    claims_for_app,
)
from courtyard.gateway._assertions import AssertionSigner
from courtyard.gateway._credentials import Caller, CredentialTable, credential_key
from courtyard.gateway._tokens import FOREIGN, TokenVerifier
from courtyard.gateway._usage import UsageLog

if TYPE_CHECKING:
    from courtyard.gateway._exchange import Exchange

# The node's built-in app (courtyard.node.CONTROL_PLANE_APP; the gateway may not import the
# node): it authenticates callers itself, so it gets their Cookie and Authorization as sent.
CONTROL_PLANE_APP = "courtyard"

# Verdicts of AccessGate.check (0 is falsy: the hot path tests `if verdict:`).
FORWARD = 0
LOGIN = 1  # browser without a usable session: 302 to the sign-in page
UNAUTHENTICATED = 2  # no credential: 401
INVALID = 3  # a credential that is not (or no longer) valid: 401 invalid_token
FORBIDDEN = 4  # authenticated, but no rule admits the caller: 403
UNCONFIGURED = 5  # no identity provider yet and the app is not public: 503

_DENY_ALL = AccessPolicy(public=False, allow=[])
_PAT_PREFIX = b"cy_pat_"
_MEMO_SIZE = 4096  # Cookie and Authorization values remembered before starting afresh
_DECISIONS_SIZE = 50_000  # callers with cached verdicts before starting afresh
_SAFE_METHODS = (b"GET", b"HEAD")

# Authorization kinds
_OTHER = 0  # not the platform's (another scheme, or a bearer token of someone else)
_PAT = 1  # a personal access token / API key: looked up in the credential table
_JWT = 2  # an access token signed by the platform
_FOREIGN = 3  # a bearer token the platform did not issue (forwarded; refused where needed)


class AppAccess:
    """One app's policy, compiled at snapshot time."""

    __slots__ = ("allow_text", "is_passthrough", "is_public", "policy")

    def __init__(self, name: str, policy: AccessPolicy) -> None:
        self.policy = policy
        self.is_public = bool(policy["public"])
        self.is_passthrough = self.is_public and name == CONTROL_PLANE_APP
        self.allow_text = ", ".join(policy["allow"]) or "nobody"


class _Presented:
    """What an Authorization value carries, worked out once per distinct value."""

    __slots__ = ("key", "kind", "line", "token")

    def __init__(self, kind: int, line: bytes, key: str = "", token: bytes = b"") -> None:
        self.kind = kind
        self.line = line  # the field as forwarded to apps (b"": not forwarded)
        self.key = key
        self.token = token


def split_cookie(cookie: bytes, name: bytes) -> tuple[bytes | None, bytes]:
    """(value of cookie ``name`` or None, the Cookie value without it) - RFC 6265 §5.4.

    Names compare exactly; every pair named ``name`` is removed and the first one counts.
    """
    if name not in cookie:
        return None, cookie
    found: bytes | None = None
    kept: list[bytes] = []
    for pair in cookie.split(b";"):
        key, sep, value = pair.strip(b" \t").partition(b"=")
        if sep and key == name:
            if found is None:
                found = value
        elif pair.strip(b" \t"):
            kept.append(pair.strip(b" \t"))
    return found, b"; ".join(kept)


def bearer_token(value: bytes) -> bytes | None:
    """The token of ``Bearer <token>`` (scheme case-insensitive, RFC 6750 §2.1), or None."""
    scheme, _, token = value.strip(b" \t").partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    token = token.strip(b" \t")
    return token or None


def login_location(login_path: str, path: bytes, query: bytes) -> bytes:
    """Where a browser without a session goes: the sign-in page with ``next`` = the path and
    query it asked for, percent-encoded (the sign-in page checks it with ``safe_next``)."""
    target = quote(path + query, safe="/")
    separator = "&" if "?" in login_path else "?"
    return f"{login_path}{separator}next={target}".encode("ascii", "replace")


def is_browser(ex: Exchange) -> bool:
    """A top-level navigation: GET or HEAD that accepts HTML (API clients get 401)."""
    accept = ex.accept
    return ex.method in _SAFE_METHODS and accept is not None and b"text/html" in accept


class AccessGate:
    """A worker's credentials, policies, verifier and signer, and the verdict per request."""

    __slots__ = (
        "_cookies",
        "_decisions",
        "_presented",
        "apps",
        "auth",
        "credentials",
        "login_path",
        "session_cookie",
        "signer",
        "usage",
        "verifier",
    )

    def __init__(self) -> None:
        self.auth: GatewayAuth | None = None
        self.apps: dict[str, AppAccess] = {}
        self.credentials = CredentialTable()
        self.usage = UsageLog()
        self.verifier: TokenVerifier | None = None
        self.signer: AssertionSigner | None = None
        self.session_cookie = b""
        self.login_path = "/login"
        # Cookie value -> (session key or None, the Cookie line to forward)
        self._cookies: dict[bytes, tuple[str | None, bytes]] = {}
        self._presented: dict[bytes, _Presented] = {}
        # credential key -> app -> admitting rule ("" when none admits)
        self._decisions: dict[str, dict[str, str]] = {}

    # -- configuration ---------------------------------------------------------------------

    def apply_snapshot(self, snapshot: GatewaySnapshot) -> None:
        """Take the snapshot's policies and auth settings (keys are checked beforehand)."""
        apps: dict[str, AppAccess] = {}
        for name, upstream in snapshot["apps"].items():
            # An app without a policy (an older producer) admits nobody: default deny.
            policy = cast("dict[str, AccessPolicy]", upstream).get("access", _DENY_ALL)
            apps[name] = AppAccess(name, policy)
        auth = snapshot.get("auth")
        if auth != self.auth:
            self.verifier = TokenVerifier(auth) if auth is not None else None
            self.signer = AssertionSigner(auth) if auth is not None else None
            self.session_cookie = auth["session_cookie"].encode() if auth is not None else b""
            self.login_path = auth["login_path"] if auth is not None else "/login"
            self._cookies = {}
            self._presented = {}
            self.auth = auth
        self.apps = apps
        self._decisions = {}  # policies may have changed

    def apply_credentials(self, message: CredentialsMessage) -> None:
        """Apply a ``credentials`` message; cached verdicts of the keys it touches go."""
        touched = self.credentials.apply(message)
        if self.signer is not None:
            self.signer.forget(touched)
        if touched is None:
            self._decisions = {}
        else:
            for key in touched:
                self._decisions.pop(key, None)

    # -- the verdict -----------------------------------------------------------------------

    def check(self, ex: Exchange, app: str, wall: float, client: bytes) -> int:
        """Authenticate and authorize ``ex`` for ``app``; sets the lines to forward.

        Returns FORWARD or why not (records an AccessDenial for refused credentials).
        """
        access = self.apps.get(app)
        if access is None:
            access = AppAccess(app, _DENY_ALL)
        cookie = ex.cookie
        authorization = ex.authorization
        if access.is_passthrough or self.auth is None:
            if cookie is not None:
                ex.cookie_line = b"Cookie: " + cookie + b"\r\n"
            if authorization is not None:
                ex.auth_line = b"Authorization: " + authorization + b"\r\n"
            return FORWARD if access.is_public else UNCONFIGURED
        caller: Caller | str | None = None
        foreign = False
        if authorization is not None:
            presented = self._present(authorization)
            ex.auth_line = presented.line
            if presented.kind == _PAT:
                caller = self._find(presented.key, "token", wall) or "unknown token"
            elif presented.kind == _JWT:
                caller = self._verify(presented.token, app, wall)
            else:
                foreign = presented.kind == _FOREIGN
        from_cookie = False
        if cookie is not None:
            key, line = self._cookie(cookie)
            ex.cookie_line = line
            if caller is None and key is not None:
                from_cookie = True
                caller = self._find(key, "session", wall) or "unknown session"
        if caller is None and foreign:
            caller = "bearer token not issued by the platform"
        if isinstance(caller, Caller):
            if caller.kind == "session":
                self.usage.used.add(caller.key)
            if not access.is_public and not self._admits(caller, app, access):
                self._deny(ex, app, 403, self._refusal(caller, access), caller, client)
                return FORBIDDEN
            signer = self.signer
            assert signer is not None
            ex.identity_line = signer.line(caller, app, wall)
            return FORWARD
        if access.is_public:
            return FORWARD  # never 401 on a public app: it just gets no identity
        if caller is None:
            return LOGIN if is_browser(ex) else UNAUTHENTICATED
        self._deny(ex, app, 401, caller, None, client)
        return LOGIN if from_cookie and is_browser(ex) else INVALID

    def _find(self, key: str, kind: str, wall: float) -> Caller | str | None:
        found = self.credentials.find(key, wall)
        if isinstance(found, Caller) and found.kind != kind:
            return None  # a session secret is no API token, and the other way round
        return found

    def _verify(self, token: bytes, app: str, wall: float) -> Caller | str:
        verifier = self.verifier
        assert verifier is not None
        outcome = verifier.verify(token)
        if isinstance(outcome, str):
            return "access token: " + outcome
        reason = verifier.check(outcome, app, wall, self.credentials.revoked_jti)
        return outcome if reason is None else reason

    def _admits(self, caller: Caller, app: str, access: AppAccess) -> bool:
        per_app = self._decisions.get(caller.key)
        if per_app is None:
            if len(self._decisions) >= _DECISIONS_SIZE:
                self._decisions.clear()
            per_app = self._decisions[caller.key] = {}
        rule = per_app.get(app)
        if rule is None:
            claims = claims_for_app(caller.identity, caller.app_roles, app)
            rule = per_app[app] = admitting_rule(access.policy, claims) or ""
        return rule != ""

    @staticmethod
    def _refusal(caller: Caller, access: AppAccess) -> str:
        return f"no allow rule admits {caller.identity['sub']} (allow: {access.allow_text})"

    def _deny(
        self,
        ex: Exchange,
        app: str,
        status: int,
        reason: str,
        caller: Caller | None,
        client: bytes,
    ) -> None:
        self.usage.deny(
            AccessDenial(
                app=app,
                status=status,
                reason=reason,
                subject=caller.identity["sub"] if caller is not None else "-",
                method=ex.method.decode("latin-1"),
                path=ex.path.decode("latin-1"),
                request_id=(ex.request_id or b"").decode("latin-1"),
                client=client.decode("latin-1"),
            )
        )

    # -- parsing, memoized -----------------------------------------------------------------

    def _cookie(self, cookie: bytes) -> tuple[str | None, bytes]:
        memo = self._cookies.get(cookie)
        if memo is None:
            value, rest = split_cookie(cookie, self.session_cookie)
            # The platform's session never reaches an app; the app's own cookies do.
            line = b"Cookie: " + rest + b"\r\n" if rest else b""
            key = credential_key(value) if value else None
            if len(self._cookies) >= _MEMO_SIZE:
                self._cookies.clear()
            memo = self._cookies[cookie] = (key, line)
        return memo

    def _present(self, authorization: bytes) -> _Presented:
        presented = self._presented.get(authorization)
        if presented is None:
            presented = self._classify(authorization)
            if len(self._presented) >= _MEMO_SIZE:
                self._presented.clear()
            self._presented[authorization] = presented
        return presented

    def _classify(self, authorization: bytes) -> _Presented:
        line = b"Authorization: " + authorization + b"\r\n"
        token = bearer_token(authorization)
        if token is None:
            return _Presented(_OTHER, line)
        if token.startswith(_PAT_PREFIX):
            return _Presented(_PAT, b"", key=credential_key(token))
        verifier = self.verifier
        assert verifier is not None
        outcome = verifier.verify(token)
        if isinstance(outcome, str) and outcome in FOREIGN:
            return _Presented(_FOREIGN, line)  # an app's own token: the app may have it
        return _Presented(_JWT, b"", token=token)
