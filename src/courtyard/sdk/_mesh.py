"""Calling another app and publishing events through the platform's mesh, so an app author never
handles the workload credential, the deadline header or the end user's assertion by hand.

Every call goes to ``{COURTYARD_MESH_URL}/<service><path>`` with ``Authorization: Bearer
<workload credential>`` (RFC 6750 §2.1). The supervisor rewrites the credential file before
the token expires; the client rereads it whenever the file changes, so a long-running app
never calls with a stale credential.
"""

from __future__ import annotations

import json as jsonlib
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote

import httpx

from courtyard.contracts import DEADLINE_HEADER, EVENTS_PREFIX, ON_BEHALF_OF_HEADER
from courtyard.sdk._errors import SdkError
from courtyard.sdk._identity import Identity
from courtyard.sdk._tracing import TRACEPARENT, current_span

MESH_URL_ENV = "COURTYARD_MESH_URL"
CREDENTIAL_ENV = "COURTYARD_WORKLOAD_CREDENTIAL"
EVENT_ID_HEADER = "ce-id"  # CloudEvents HTTP binding §3.1.3: the publisher's own event id
DEFAULT_TIMEOUT = 30.0  # seconds, for calls made without a timeout of their own
# Past a call's deadline the mesh answers 504 itself; wait this much longer for that answer.
DEADLINE_GRACE = 0.5
MAX_CREDENTIAL_BYTES = 16 * 1024
_OWN_HEADERS = frozenset(("authorization", ON_BEHALF_OF_HEADER.lower(), DEADLINE_HEADER.lower()))
_SERVICE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")

OnBehalfOf = Identity | str | None


class MeshError(SdkError):
    """A mesh call or publish that did not succeed.

    ``status`` is the HTTP status of the answer (None when there was none: no mesh at that
    address, no credential, a timeout); ``title`` and ``detail`` come from its problem document
    (RFC 9457 §3.1) when it had one; ``response`` is the answer itself, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        title: str = "",
        detail: str = "",
        response: httpx.Response | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.detail = detail
        self.response = response

    @property
    def problem(self) -> dict[str, Any]:
        """The answer's problem document, or ``{}``."""
        if self.response is None:
            return {}
        return _json_object(self.response)


class CredentialFile:
    """The workload credential in the file the platform names (``$COURTYARD_WORKLOAD_CREDENTIAL``).

    Read on first use and again whenever the file's modification time, size or inode changes
    (the supervisor replaces it atomically before the token expires); thread-safe.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._token = ""

    def token(self) -> str:
        """The current credential; raises MeshError when the file is missing or empty."""
        try:
            stat = self.path.stat()
        except OSError as exc:
            raise MeshError(
                f"cannot read the workload credential {self.path}: {exc.strerror}"
            ) from None
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        with self._lock:
            if stamp != self._stamp:
                self._token = self._read()
                self._stamp = stamp
            return self._token

    def _read(self) -> str:
        try:
            with self.path.open("rb") as source:
                raw = source.read(MAX_CREDENTIAL_BYTES + 1)
        except OSError as exc:
            raise MeshError(
                f"cannot read the workload credential {self.path}: {exc.strerror}"
            ) from None
        token = raw.decode("ascii", "replace").strip()
        if not token or len(raw) > MAX_CREDENTIAL_BYTES or any(c.isspace() for c in token):
            raise MeshError(f"the workload credential {self.path} holds no token")
        return token


Credential = CredentialFile | os.PathLike[str] | str


def _credential_source(credential: Credential) -> Callable[[], str]:
    """A str is the token itself; a path or a CredentialFile is read (and reread)."""
    if isinstance(credential, CredentialFile):
        return credential.token
    if isinstance(credential, str):
        token = credential
        return lambda: token
    return CredentialFile(credential).token


def _environment(environ: Mapping[str, str] | None) -> tuple[str, CredentialFile]:
    env = os.environ if environ is None else environ
    url, path = env.get(MESH_URL_ENV, ""), env.get(CREDENTIAL_ENV, "")
    missing = [name for name, value in ((MESH_URL_ENV, url), (CREDENTIAL_ENV, path)) if not value]
    if missing:
        raise MeshError(
            f"{' and '.join(missing)} not set: run the app under Courtyard, or build the mesh "
            "client with a URL and a credential yourself"
        )
    return url, CredentialFile(path)


def _json_object(response: httpx.Response) -> dict[str, Any]:
    if "json" not in response.headers.get("content-type", ""):
        return {}
    try:
        document = jsonlib.loads(response.content)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def _failure(response: httpx.Response, what: str) -> MeshError:
    """A readable error for an answer of 400 or more: the problem's detail when there is one."""
    problem = _json_object(response)
    title = str(problem.get("title") or response.reason_phrase or "")
    detail = str(problem.get("detail") or "")
    message = f"{what} answered {response.status_code}"
    if title:
        message += f" {title}"
    if detail:
        message += f": {detail}"
    return MeshError(
        message, status=response.status_code, title=title, detail=detail, response=response
    )


class _MeshRequests:
    """What the sync and async clients share: building each request, reading each answer."""

    def __init__(
        self, url: str, credential: Credential, *, clock: Callable[[], float] = time.time
    ) -> None:
        if not url:
            raise MeshError("a mesh client needs the mesh's URL")
        self.url = url.rstrip("/")
        self._credential = _credential_source(credential)
        self._clock = clock

    def _call_request(
        self,
        http: httpx.Client | httpx.AsyncClient,
        service: str,
        path: str,
        method: str,
        params: Any,
        json: Any,
        content: bytes | str | None,
        headers: Mapping[str, str] | None,
        on_behalf_of: OnBehalfOf,
        timeout: float | None,
    ) -> httpx.Request:
        if not _SERVICE.fullmatch(service):
            raise MeshError(f"{service!r} is not an app name")
        if not path.startswith("/"):
            path = "/" + path
        # The mesh reads these from the client alone; a copy in ``headers`` never wins.
        merged = {
            key: value for key, value in (headers or {}).items() if key.lower() not in _OWN_HEADERS
        }
        merged["Authorization"] = f"Bearer {self._credential()}"
        assertion = on_behalf_of.token if isinstance(on_behalf_of, Identity) else on_behalf_of
        if isinstance(on_behalf_of, Identity) and not assertion:
            raise MeshError("on_behalf_of: this Identity carries no assertion (token)")
        if assertion:
            merged[ON_BEHALF_OF_HEADER] = assertion
        span = current_span()
        if span is not None and _header(merged, TRACEPARENT) is None:
            # Trace Context §3.2: the call continues the app's current span.
            merged[TRACEPARENT] = span.traceparent()
        deadline = self._deadline(timeout, _header(headers or {}, DEADLINE_HEADER))
        if deadline is not None:
            merged[DEADLINE_HEADER] = str(deadline)
        return http.build_request(
            method.upper(),
            f"{self.url}/{service}{path}",
            params=params,
            json=json,
            content=content,
            headers=merged,
            timeout=httpx.USE_CLIENT_DEFAULT
            if deadline is None
            else max(deadline / 1000 - self._clock(), 0.0) + DEADLINE_GRACE,
        )

    def _deadline(self, timeout: float | None, given: str | None) -> int | None:
        """The call's deadline (ms since the epoch): ``timeout`` from now, or the deadline the
        app passes on in ``headers`` (one it received), whichever comes first."""
        deadlines = []
        if timeout is not None:
            deadlines.append(int((self._clock() + timeout) * 1000))
        if given is not None and given.strip().isdigit():
            deadlines.append(int(given))
        return min(deadlines) if deadlines else None

    def _publish_request(
        self,
        http: httpx.Client | httpx.AsyncClient,
        topic: str,
        data: Any,
        event_id: str | None,
    ) -> httpx.Request:
        if not topic or "/" in topic:
            raise MeshError(f"{topic!r} is not a topic")
        headers = {"Authorization": f"Bearer {self._credential()}"}
        if event_id is not None:
            headers[EVENT_ID_HEADER] = event_id
        return http.build_request(
            "POST", f"{self.url}{EVENTS_PREFIX}{quote(topic)}", json=data, headers=headers
        )

    @staticmethod
    def _answer(response: httpx.Response, service: str, method: str, path: str) -> None:
        if response.status_code >= 400:
            raise _failure(response, f"{method.upper()} {service} {path}")

    @staticmethod
    def _event_id(response: httpx.Response, topic: str) -> str:
        if response.status_code >= 400:
            raise _failure(response, f"publishing to {topic}")
        event_id = _json_object(response).get("id")
        if not isinstance(event_id, str) or not event_id:
            raise MeshError(
                f"publishing to {topic}: the answer names no event id", response=response
            )
        return event_id


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    return next((value for key, value in headers.items() if key.lower() == lowered), None)


def _unreachable(url: str, exc: httpx.HTTPError, timeout: float | None) -> MeshError:
    if isinstance(exc, httpx.TimeoutException):
        within = f" within {timeout:g} s" if timeout is not None else " in time"
        return MeshError(f"no answer from the mesh at {url}{within}")
    if isinstance(exc, httpx.ConnectError):
        return MeshError(f"no mesh answers at {url} (is the app running under Courtyard?)")
    return MeshError(f"talking to the mesh at {url} failed: {exc.__class__.__name__}")


class MeshClient(_MeshRequests):
    """Calls other apps and publishes events through the mesh, for threaded code.

    ``credential`` is the workload credential: a path (or :class:`CredentialFile`), reread
    when it changes, or the token itself as a str. ``transport`` replaces the network (tests:
    ``httpx.MockTransport`` or :class:`courtyard.sdk.testing.FakeMesh`); ``clock`` returns
    seconds since the epoch and sets deadlines.
    """

    def __init__(
        self,
        url: str,
        credential: Credential,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(url, credential, clock=clock)
        self._http = httpx.Client(transport=transport, timeout=timeout)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None, **options: Any) -> Self:
        """The client of the app instance this process is, from ``COURTYARD_MESH_URL`` and
        ``COURTYARD_WORKLOAD_CREDENTIAL`` (read now); raises MeshError naming what is missing."""
        url, credential = _environment(environ)
        return cls(url, credential, **options)

    def call(
        self,
        service: str,
        path: str,
        method: str = "GET",
        *,
        params: Any = None,
        json: Any = None,
        content: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        on_behalf_of: OnBehalfOf = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """``method path`` on the app ``service``; the answer when its status is below 400.

        ``on_behalf_of`` is the end user's assertion this app received (its ``Identity`` or
        the token): the target then sees that user as ``sub``. ``timeout`` (seconds) also
        sets ``Courtyard-Deadline``, which the mesh enforces and passes on. Raises MeshError
        for an answer of 400 or more (``.status``, ``.detail``, ``.response``) and when the
        mesh cannot be reached.
        """
        request = self._call_request(
            self._http, service, path, method, params, json, content, headers, on_behalf_of, timeout
        )
        try:
            response = self._http.send(request)
        except httpx.HTTPError as exc:
            raise _unreachable(self.url, exc, timeout) from None
        self._answer(response, service, method, path)
        return response

    def publish(self, topic: str, data: Any, *, id: str | None = None) -> str:
        """Publish ``data`` (JSON) to ``topic``; the event's id once the platform stored it.

        ``id`` names the event yourself (say, to publish again after a crash without a
        duplicate id); by default the platform gives it a UUID.
        """
        request = self._publish_request(self._http, topic, data, id)
        try:
            response = self._http.send(request)
        except httpx.HTTPError as exc:
            raise _unreachable(self.url, exc, None) from None
        return self._event_id(response, topic)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class AsyncMeshClient(_MeshRequests):
    """:class:`MeshClient` for async code; the same arguments, ``await`` every call."""

    def __init__(
        self,
        url: str,
        credential: Credential,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(url, credential, clock=clock)
        self._http = httpx.AsyncClient(transport=transport, timeout=timeout)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None, **options: Any) -> Self:
        """As :meth:`MeshClient.from_environment`."""
        url, credential = _environment(environ)
        return cls(url, credential, **options)

    async def call(
        self,
        service: str,
        path: str,
        method: str = "GET",
        *,
        params: Any = None,
        json: Any = None,
        content: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        on_behalf_of: OnBehalfOf = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """As :meth:`MeshClient.call`."""
        request = self._call_request(
            self._http, service, path, method, params, json, content, headers, on_behalf_of, timeout
        )
        try:
            response = await self._http.send(request)
        except httpx.HTTPError as exc:
            raise _unreachable(self.url, exc, timeout) from None
        self._answer(response, service, method, path)
        return response

    async def publish(self, topic: str, data: Any, *, id: str | None = None) -> str:
        """As :meth:`MeshClient.publish`."""
        request = self._publish_request(self._http, topic, data, id)
        try:
            response = await self._http.send(request)
        except httpx.HTTPError as exc:
            raise _unreachable(self.url, exc, None) from None
        return self._event_id(response, topic)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()
