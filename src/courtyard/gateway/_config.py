"""The gateway's settings and its error tree, read once when a worker starts.

Error tree::

    GatewayError
    ├── InvalidSnapshot
    ├── InvalidTarget
    └── TlsInvalid
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from courtyard.core import CourtyardError


class GatewayError(CourtyardError):
    """Root of every error the gateway raises on purpose."""


class InvalidSnapshot(GatewayError):
    """A snapshot (file or message) does not have the GatewaySnapshot shape."""


class InvalidTarget(GatewayError):
    """A request target the gateway refuses to route; ``status`` is the HTTP answer."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class TlsInvalid(GatewayError):
    """The TLS certificate or key cannot be read, is not PEM, or the two do not match."""


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Limits and timeouts of one gateway worker (seconds, bytes); routes carry their own."""

    max_head_bytes: int = 16 * 1024  # request line + header fields -> 431 above
    max_headers: int = 100  # header fields per request -> 431 above
    max_url_bytes: int = 8 * 1024  # request target -> 414 above
    header_timeout: float = 10.0  # first byte to end of head (slowloris) -> 408
    keepalive_timeout: float = 60.0  # idle client connection between requests -> close
    body_timeout: float = 60.0  # no request body byte for this long -> close
    upstream_idle_timeout: float = 300.0  # no response byte for this long mid-body -> close
    tunnel_idle_timeout: float = 3600.0  # upgraded (WebSocket) connection silent both ways
    pool_idle_timeout: float = 4.0  # pooled upstream connection unused (below uvicorn's 5 s)
    max_idle_per_instance: int = 64  # pooled connections kept per instance
    down_time: float = 1.0  # an instance refusing connections is skipped this long
    pipeline_depth: int = 16  # pipelined requests queued before reading pauses
    buffer_bytes: int = 256 * 1024  # request body held while connecting -> reading pauses
    drain_timeout: float = 30.0  # report a snapshot drained after this even if busy
    shutdown_grace: float = 10.0  # in-flight requests get this long on stop
    sweep_interval: float = 0.25  # period of the one timer that enforces every timeout
    backlog: int = 1024
    access_log: str | None = None  # file path, "-" for stdout, None for no access log
    tls_cert: str | None = None  # PEM certificate chain; with tls_key the port serves TLS
    tls_key: str | None = None  # PEM private key of tls_cert
    telemetry: bool = True  # count metrics and record spans (off only to measure their cost)
    trace_sample: float = 1.0  # share of new traces recorded (a traceparent's flag decides)

    @property
    def is_tls(self) -> bool:
        """True when the listening sockets terminate TLS."""
        return self.tls_cert is not None

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if spec.name == "trace_sample":
                if not 0 <= value <= 1:
                    raise GatewayError(f"gateway setting trace_sample must be 0-1, got {value}")
            elif isinstance(value, int | float) and not isinstance(value, bool) and value <= 0:
                raise GatewayError(f"gateway setting {spec.name} must be positive, got {value}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise TlsInvalid("a TLS certificate and its key go together: give both or neither")
