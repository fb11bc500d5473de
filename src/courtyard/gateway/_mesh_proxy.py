"""The mesh listener's connections: the same parser, pool, streaming and timeouts as the public
proxy, with one different start per request: ``/<service>/<path>`` instead of the route table,
and the mesh gate (workload credential, declared call) instead of the access gate."""

from __future__ import annotations

from dataclasses import replace

from courtyard.gateway._answers import HEALTHZ, READYZ
from courtyard.gateway._config import InvalidTarget
from courtyard.gateway._exchange import Exchange
from courtyard.gateway._mesh import Refusal
from courtyard.gateway._paths import parse_target
from courtyard.gateway._proxy import ClientConnection
from courtyard.gateway._requests import RequestRejected, upstream_head
from courtyard.gateway._responses import CONTINUE

_ON_BEHALF = b"courtyard-on-behalf-of"  # contracts.ON_BEHALF_OF_HEADER, lower case
_DEADLINE = b"courtyard-deadline"  # contracts.DEADLINE_HEADER, lower case
_MAX_DEADLINE_DIGITS = 15  # milliseconds since the epoch: 13 digits until the year 2286


def take_mesh_fields(ex: Exchange) -> tuple[bytes | None, bytes | None]:
    """(Courtyard-On-Behalf-Of, Courtyard-Deadline) of the request; the first is removed from
    the fields forwarded (in any spelling, "_" for "-" too), the second is kept.

    Raises RequestRejected when either is repeated: two values make neither trustworthy.
    """
    fwd = ex.fwd
    on_behalf: bytes | None = None
    deadline: bytes | None = None
    kept: list[bytes] | None = None
    for i in range(0, len(fwd), 4):
        name = fwd[i].lower()
        if b"courtyard" not in name:
            if kept is not None:
                kept += fwd[i : i + 4]
            continue
        name = name.replace(b"_", b"-")
        if name == _ON_BEHALF:
            if on_behalf is not None:
                raise RequestRejected(400, "the request repeats Courtyard-On-Behalf-Of")
            on_behalf = fwd[i + 2].strip(b" \t")
            if kept is None:
                kept = fwd[:i]
            continue
        if name == _DEADLINE:
            if deadline is not None:
                raise RequestRejected(400, "the request repeats Courtyard-Deadline")
            deadline = fwd[i + 2].strip(b" \t")
        if kept is not None:
            kept += fwd[i : i + 4]
    if kept is not None:
        ex.fwd = kept
    return on_behalf, deadline


def parse_deadline(value: bytes) -> float | None:
    """Seconds since the epoch of a ``Courtyard-Deadline`` (milliseconds, digits), or None."""
    if not value.isdigit() or len(value) > _MAX_DEADLINE_DIGITS:
        return None
    return int(value) / 1000.0


class MeshConnection(ClientConnection):
    """A connection to the mesh listener: requests are workload-to-workload calls."""

    __slots__ = ()

    def _count_unrouted(self, status: int, seconds: float | None) -> None:
        """An answer before any caller was known is still a mesh call (caller and target
        "-"), not a gateway request."""
        self.state.metrics.record_mesh("-", "-", status, seconds)

    def _start(self, ex: Exchange) -> None:
        """Authenticate and authorize ``ex`` as a mesh call and send it on, or answer it."""
        self.active = ex
        ex.caller = "-"  # a mesh call from the start: counted as one, never as a request
        state = self.state
        state.metrics.in_flight += 1
        minted, span = state.ids.ids()
        if ex.request_id is None:
            ex.request_id = minted
        try:
            _, path, query = parse_target(ex.url)
            on_behalf, deadline_field = take_mesh_fields(ex)
        except InvalidTarget as exc:
            self._answer_error(ex, exc.status, exc.reason)
            return
        except RequestRejected as exc:
            ex.path = ex.path or ex.url.partition(b"?")[0]
            self._answer_error(ex, exc.status, exc.detail)
            return
        ex.path = path
        if path in (HEALTHZ, READYZ):
            self._answer_health(ex, path)
            return
        deadline = None
        if deadline_field is not None:
            deadline = parse_deadline(deadline_field)
            if deadline is None:
                self._answer_error(ex, 400, "Courtyard-Deadline must be milliseconds since 1970")
                return
        wall = state.now + state.wall_offset
        outcome = state.mesh.decide(ex, state.access, path, query, on_behalf, wall, self.client_ip)
        if isinstance(outcome, Refusal):
            self._answer_error(ex, outcome.status, outcome.detail, extra=outcome.extra)
            return
        route, target = outcome
        if deadline is not None:
            # Deadlines propagate: the caller's time left bounds the wait for the answer.
            remaining = deadline - (state.monotonic() + state.wall_offset)
            if remaining <= 0:
                self._answer_error(ex, 504, "the caller's deadline (Courtyard-Deadline) passed")
                return
            if remaining < route.response_timeout:
                route = replace(
                    route,
                    connect_timeout=min(route.connect_timeout, remaining),
                    response_timeout=remaining,
                )
        if ex.content_length > route.max_body_bytes or ex.body_seen > route.max_body_bytes:
            self._answer_error(
                ex, 413, f"the request body exceeds {route.max_body_bytes} bytes", close=True
            )
            return
        ex.route = route
        ex.head = upstream_head(
            ex, route, target, ex.host, self.xff, minted, span, state.config.trace_sample
        )
        if ex.expect and not ex.request_done and ex.body_seen == 0:
            # RFC 9110 §10.1.1: the mesh accepted the request, so it asks for the body.
            assert self.transport is not None
            self.transport.write(CONTINUE)
        self._dispatch(ex)
