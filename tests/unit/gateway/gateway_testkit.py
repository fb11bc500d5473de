"""Test kit of the gateway suite: an in-process upstream that records every byte it receives,
a raw-socket HTTP client, and snapshot builders.

Loaded by conftest.py as module ``gateway_testkit`` (the suite runs with
``--import-mode=importlib``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qs

import httptools
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from courtyard.contracts import (
    AccessPolicy,
    CredentialsMessage,
    GatewayAuth,
    GatewayCredential,
    GatewaySnapshot,
    IdentityClaims,
    Route,
    UpstreamInstance,
)

TIMEOUT = 5.0


def route(
    app: str = "echo",
    path: str = "/apps/echo/",
    *,
    host: str | None = None,
    strip_prefix: bool = True,
    max_body_bytes: int = 1 << 30,
    connect_timeout: float = 1.0,
    response_timeout: float = 5.0,
) -> Route:
    return Route(
        app=app,
        path=path,
        host=host,
        strip_prefix=strip_prefix,
        max_body_bytes=max_body_bytes,
        connect_timeout=connect_timeout,
        response_timeout=response_timeout,
    )


def instance(id: str, port: int, host: str = "127.0.0.1", revision: int = 1) -> UpstreamInstance:
    return UpstreamInstance(id=id, host=host, port=port, revision=revision)


def snapshot(
    version: int,
    routes: list[Route],
    apps: dict[str, list[UpstreamInstance]],
    *,
    access: dict[str, AccessPolicy] | None = None,
    auth: GatewayAuth | None = None,
) -> GatewaySnapshot:
    """A snapshot whose apps are public unless ``access`` names their policy."""
    policies = access or {}
    return {
        "version": version,
        "routes": routes,
        "apps": {
            name: {
                "name": name,
                "instances": members,
                "access": policies.get(name, AccessPolicy(public=True, allow=[])),
            }
            for name, members in apps.items()
        },
        "auth": auth,
    }


# -- the upstream ----------------------------------------------------------------------------


@dataclass
class Request:
    """One request as the upstream parsed it."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes = b""

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def header_all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]


class _UpstreamProtocol(asyncio.Protocol):
    """Answers by path; see Upstream for the behaviours."""

    def __init__(self, server: Upstream) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.raw = bytearray()
        self.tunnel = False
        self.current: Request | None = None
        self.streaming = False  # answering /stream-echo: body chunks go straight back
        self.paused = False
        self.resume = asyncio.Event()
        self.resume.set()
        self.tasks: list[asyncio.Task[None]] = []
        self.served = 0  # requests answered on this connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment] (uvloop's is no subclass)
        self.server.connections.append(self)
        self.server.connections_made += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.resume.set()
        if self in self.server.connections:
            self.server.connections.remove(self)
        for task in self.tasks:
            task.cancel()

    def pause_writing(self) -> None:
        self.resume.clear()

    def resume_writing(self) -> None:
        self.resume.set()

    def data_received(self, data: bytes) -> None:
        self.raw += data
        self.server.received += data
        if self.tunnel:
            assert self.transport is not None
            self.transport.write(data)  # WebSocket stand-in: echo raw bytes
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            rest = data[exc.args[0] :]
            assert self.transport is not None
            last = self.server.requests[-1] if self.server.requests else None
            if last is None or not last.target.endswith("/ws"):
                self.transport.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno")
                self.transport.close()
                return
            self.tunnel = True
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n"
            )
            if rest:
                self.transport.write(rest)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.server.parse_errors += 1
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.current = Request("", "", [])
        self.streaming = False

    def on_url(self, url: bytes) -> None:
        assert self.current is not None
        self.current.target += url.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.current is not None
        self.current.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        request = self.current
        assert request is not None and self.transport is not None
        request.method = self.parser.get_method().decode()
        path = request.target.partition("?")[0]
        if path.endswith("/stream-echo"):
            # Answer at once and echo the body as it arrives.
            self.streaming = True
            self.server.requests.append(request)
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Instance: "
                + self.server.name.encode()
                + b"\r\n\r\n"
            )

    def on_body(self, body: bytes) -> None:
        request = self.current
        assert request is not None and self.transport is not None
        if self.streaming:
            self.server.streamed += len(body)
            self.transport.write(b"%x\r\n%s\r\n" % (len(body), body))
            return
        request.body += body

    def on_message_complete(self) -> None:
        request = self.current
        assert request is not None and self.transport is not None
        if self.streaming:
            self.transport.write(b"0\r\n\r\n")
            return
        self.server.requests.append(request)
        self.served += 1
        if self.parser.should_upgrade():
            return  # answered with 101 when httptools reports the upgrade
        task = asyncio.get_running_loop().create_task(self.server.answer(self, request))
        self.tasks.append(task)
        task.add_done_callback(self.tasks.remove)

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        if not self.transport.is_closing():
            self.transport.write(data)


Handler = Callable[[_UpstreamProtocol, Request], Awaitable[bool]]


@dataclass
class Upstream:
    """An HTTP/1.1 server on 127.0.0.1:0 that records every byte and request it receives.

    Paths (after the gateway strips /apps/echo): ``/status/N``, ``/chunked``,
    ``/close-delimited``, ``/hold`` (waits for ``release()``), ``/delay?s=``, ``/reset``,
    ``/reset-reused``, ``/stall``, ``/drip``, ``/big?size=``, ``/hop`` (hop-by-hop response fields),
    ``/informational``, ``/stream-echo``, ``/close`` (Connection: close); anything else
    echoes the request as JSON. An upgrade to ``/ws`` gets 101 and a raw echo.
    """

    name: str = "a"
    port: int = 0
    received: bytearray = field(default_factory=bytearray)
    requests: list[Request] = field(default_factory=list)
    connections: list[_UpstreamProtocol] = field(default_factory=list)
    connections_made: int = 0
    parse_errors: int = 0
    streamed: int = 0
    held: int = 0
    resets: int = 0
    _server: asyncio.Server | None = None
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self, port: int = 0) -> Upstream:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _UpstreamProtocol(self), "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def aclose(self) -> None:
        """Stop listening and drop every connection."""
        self._release.set()
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            assert conn.transport is not None
            conn.transport.abort()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        await asyncio.sleep(0)

    def release(self) -> None:
        """Let every request waiting on /hold answer."""
        self._release.set()

    def instance(self, revision: int = 1) -> UpstreamInstance:
        return instance(self.name, self.port, revision=revision)

    async def answer(self, conn: _UpstreamProtocol, request: Request) -> None:
        target = request.target
        path, _, query = target.partition("?")
        args = {key: values[0] for key, values in parse_qs(query).items()}
        me = b"X-Instance: " + self.name.encode() + b"\r\n"
        if path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            if code in (204, 304):
                conn.write(b"HTTP/1.1 %d X\r\n%sContent-Length: 7\r\n\r\n" % (code, me))
            else:
                conn.write(b"HTTP/1.1 %d X\r\n%sContent-Length: 0\r\n\r\n" % (code, me))
        elif path.endswith("/chunked"):
            conn.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n" + me + b"\r\n")
            for part in (b"hello ", b"chunked ", b"world"):
                conn.write(b"%x;ext=1\r\n%s\r\n" % (len(part), part))
                await asyncio.sleep(0)
            conn.write(b"0\r\nX-Trailer: t\r\n\r\n")
        elif path.endswith("/close-delimited"):
            conn.write(b"HTTP/1.1 200 OK\r\n" + me + b"\r\nuntil-close body")
            assert conn.transport is not None
            conn.transport.close()
        elif path.endswith("/hold"):
            self.held += 1
            await self._release.wait()
            self.held -= 1
            self._ok(conn, request, me)
        elif path.endswith("/delay"):
            await asyncio.sleep(float(args.get("s", "1")))
            self._ok(conn, request, me)
        elif path.endswith("/reset"):
            assert conn.transport is not None
            conn.transport.abort()
        elif path.endswith("/reset-reused"):
            # A keep-alive connection the server dropped just as the gateway reused it.
            assert conn.transport is not None
            if conn.served > 1:
                self.resets += 1
                conn.transport.abort()
            else:
                self._ok(conn, request, me)
        elif path.endswith("/big"):
            size = int(args.get("size", "1048576"))
            conn.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n" % (size, me))
            block = b"x" * 65536
            left = size
            while left > 0:
                await conn.resume.wait()
                if conn.transport is None or conn.transport.is_closing():
                    return
                piece = block[: min(left, len(block))]
                conn.write(piece)
                left -= len(piece)
                await asyncio.sleep(0)
        elif path.endswith("/hop"):
            body = b"hop"
            conn.write(
                b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\n"
                b"Keep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\nTrailer: X-T\r\n"
                b"Upgrade: h2c\r\nX-Kept: k\r\n" + me + b"Content-Length: 3\r\n\r\n" + body
            )
        elif path.endswith("/informational"):
            conn.write(
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\n"
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + me + b"\r\nok"
            )
        elif path.endswith("/drip"):
            # Eight chunks 0.05 s apart: slow, never silent for long.
            conn.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n" + me + b"\r\n")
            for _ in range(8):
                await asyncio.sleep(0.05)
                conn.write(b"1\r\nd\r\n")
            conn.write(b"0\r\n\r\n")
        elif path.endswith("/stall"):
            # A head promising more body than ever comes.
            conn.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n" + me + b"\r\npartial")
        elif path.endswith("/close"):
            conn.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
            assert conn.transport is not None
            conn.transport.close()
        else:
            self._ok(conn, request, me)

    def _ok(self, conn: _UpstreamProtocol, request: Request, me: bytes) -> None:
        body = json.dumps(
            {
                "method": request.method,
                "target": request.target,
                "headers": request.headers,
                "body": request.body.decode("latin-1"),
            }
        ).encode()
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        if request.method == "HEAD":
            conn.write(head + me + b"Content-Length: %d\r\n\r\n" % len(body))
        else:
            conn.write(head + me + b"Content-Length: %d\r\n\r\n" % len(body) + body)


# -- the client ------------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    raw: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def header_all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def json(self) -> dict[str, object]:
        data = json.loads(self.body)
        assert isinstance(data, dict)
        return data

    def echoed(self) -> Request:
        """The request as the upstream saw it (for echo answers)."""
        data = self.json()
        headers = [(str(k), str(v)) for k, v in data["headers"]]  # type: ignore[union-attr]
        return Request(
            str(data["method"]), str(data["target"]), headers, str(data["body"]).encode("latin-1")
        )


class RawClient:
    """A plain TCP client speaking whatever bytes a test gives it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 24)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_response(self, *, head: bool = False, timeout: float = TIMEOUT) -> Response:
        """Read one response; ``head`` when it answers a HEAD request (no body)."""
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.reader.readuntil(b"\r\n\r\n")
                status_line, *lines = raw[:-4].decode("latin-1").split("\r\n")
                _, code, *reason = status_line.split(" ", 2)
                headers = [
                    (name.strip(), value.strip())
                    for name, _, value in (line.partition(":") for line in lines)
                ]
                status = int(code)
                if status >= 200 or status == 101:
                    break
            response = Response(status, reason[0] if reason else "", headers, b"", raw)
            length = response.header("content-length")
            chunked = (response.header("transfer-encoding") or "").lower() == "chunked"
            if head or status in (101, 204, 304):
                return response
            if length is not None:
                response.body = await self.reader.readexactly(int(length))
                response.raw += response.body
            elif chunked:
                body = bytearray()
                while True:
                    size_line = await self.reader.readuntil(b"\r\n")
                    response.raw += size_line
                    size = int(size_line.split(b";")[0], 16)
                    if size == 0:
                        end = await self.reader.readuntil(b"\r\n")
                        response.raw += end
                        break
                    chunk = await self.reader.readexactly(size + 2)
                    response.raw += chunk
                    body += chunk[:-2]
                response.body = bytes(body)
            else:
                response.body = await self.reader.read()
                response.raw += response.body
            return response

    async def read_all(self, timeout: float = TIMEOUT) -> bytes:
        """Everything until the server closes."""
        async with asyncio.timeout(timeout):
            return await self.reader.read()

    async def is_closed(self, timeout: float = TIMEOUT) -> bool:
        """True when the server closed the connection (EOF or reset) within ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                data = await self.reader.read(65536)
                while data:
                    data = await self.reader.read(65536)
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        return True

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


async def request(
    port: int,
    target: str = "/apps/echo/",
    *,
    method: str = "GET",
    headers: dict[str, str] | list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> Response:
    """One request on a new connection (``Connection: close``)."""
    client = await RawClient.connect(port)
    try:
        items = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
        names = {name.lower() for name, _ in items}
        if "host" not in names:
            items.insert(0, ("Host", "gw.test"))
        if body and "content-length" not in names and "transfer-encoding" not in names:
            items.append(("Content-Length", str(len(body))))
        if "connection" not in names:
            items.append(("Connection", "close"))
        head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in items)
        await client.send(head.encode("latin-1") + b"\r\n" + body)
        return await client.read_response(head=method == "HEAD")
    finally:
        await client.aclose()


async def eventually(check: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Poll ``check`` until it holds (no fixed sleeps as synchronization)."""
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.005)


# -- identity: keys, tokens and credentials ---------------------------------------------------

ISSUER = "https://courtyard.test"
SESSION_COOKIE = "courtyard_session"


def _ec_key() -> ECKey:
    return ECKey.generate_key("P-256", {"alg": "ES256"}, auto_kid=True)


def _rsa_key() -> RSAKey:
    return RSAKey.generate_key(2048, {"alg": "RS256"}, auto_kid=True)


@dataclass
class Keys:
    """The platform's keys as a test holds them: the private EC key signs tokens and
    assertions, ``other`` is a key the platform does not know."""

    signing: ECKey = field(default_factory=_ec_key)
    rsa: RSAKey = field(default_factory=_rsa_key)
    other: ECKey = field(default_factory=_ec_key)

    def auth(self, *, ttl: int = 30, login_path: str = "/login") -> GatewayAuth:
        return GatewayAuth(
            issuer=ISSUER,
            login_path=login_path,
            session_cookie=SESSION_COOKIE,
            jwks=self.jwks(),
            signing_key=self.signing.as_dict(private=True),
            assertion_ttl=ttl,
        )

    def jwks(self) -> dict[str, object]:
        return {"keys": [self.signing.as_dict(private=False), self.rsa.as_dict(private=False)]}

    def access_token(
        self,
        *,
        now: float,
        key: ECKey | RSAKey | None = None,
        header: dict[str, object] | None = None,
        **claims: object,
    ) -> str:
        """An RFC 9068 access token; ``claims`` override the defaults (None removes one)."""
        signer = key or self.signing
        alg = "RS256" if isinstance(signer, RSAKey) else "ES256"
        body: dict[str, object] = {
            "iss": ISSUER,
            "sub": "u_00000000000000aa",
            "aud": ["courtyard"],
            "iat": int(now),
            "exp": int(now) + 600,
            "jti": "jti-1",
            "client_id": "cli",
            "scope": "openid",
            "email": "ann@example.com",
            "name": "Ann",
            "groups": ["finance"],
            "roles": [],
        }
        for name, value in claims.items():
            if value is None:
                body.pop(name, None)
            else:
                body[name] = value
        head: dict[str, object] = {"alg": alg, "typ": "at+jwt", "kid": signer.kid}
        head.update(header or {})
        return jwt.encode(head, body, signer, algorithms=[str(head["alg"])])


def credential(
    secret: str,
    *,
    kind: Literal["session", "token"] = "session",
    sub: str = "u_00000000000000bb",
    email: str = "bob@example.com",
    groups: list[str] | None = None,
    roles: list[str] | None = None,
    app_roles: dict[str, list[str]] | None = None,
    expires_at: float = 4_000_000_000.0,
) -> GatewayCredential:
    return GatewayCredential(
        key=hashlib.sha256(secret.encode()).hexdigest(),
        kind=kind,
        identity=IdentityClaims(
            sub=sub, email=email, name="Bob", groups=groups or [], roles=roles or []
        ),
        app_roles=app_roles or {},
        expires_at=expires_at,
    )


def credentials(
    *upsert: GatewayCredential,
    full: bool = False,
    revoke: list[str] | None = None,
    revoked_jti: list[str] | None = None,
) -> CredentialsMessage:
    return CredentialsMessage(
        type="credentials",
        seq=0,
        full=full,
        upsert=list(upsert),
        revoke=revoke or [],
        revoked_jti=revoked_jti or [],
    )


def key_of(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
