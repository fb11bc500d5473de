"""Node settings, read once at start: flags beat `COURTYARD_*` variables beat courtyard.toml."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from courtyard.node._errors import ConfigInvalid


@dataclass(frozen=True)
class NodeConfig:
    """Everything a node needs to start; immutable once built."""

    data_dir: Path = Path(".courtyard")
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    admin_host: str = "127.0.0.1"
    admin_port: int = 9180
    database_url: str | None = None  # default: SQLite file in the data directory
    domain: str | None = None  # host routing <app>.<domain>
    public_url: str | None = None  # default: http://host:port
    drain_timeout: float = 30.0
    stop_grace: float = 10.0
    access_log: bool = True
    tls_cert: Path | None = None  # PEM certificate chain the gateway serves TLS with
    tls_key: Path | None = None  # its private key
    tls_self_signed: bool = False  # no certificate given: generate a local development one
    admin_email: str = "admin@example.com"  # the first platform admin, made at first start
    session_idle: float = 1800.0  # seconds a session lives without use (OWASP: 15-30 min)
    session_absolute: float = 43200.0  # seconds a session lives at most
    login_max_delay: float = 60.0  # cap of the growing delay after failed sign-ins
    key_propagation: float = 300.0  # seconds a new signing key is published before it signs
    events_max_attempts: int = 8  # sends of an event to a subscriber before it is dead
    events_base_delay: float = 1.0  # seconds before the second send (then doubling, capped)
    workload_lifetime: float = 600.0  # seconds an app's mesh credential lives (1 to 900)
    telemetry: bool = True  # gateway metrics and traces (off only to measure their cost)
    trace_sample: float = 1.0  # share of new traces recorded (parent-based, 0 to 1)
    otlp_endpoint: str | None = None  # OTLP/HTTP traces endpoint, e.g. http://collector:4318
    alert_interval: float = 10.0  # seconds between two evaluations of the SLO alert rules
    alert_min_events: int = 10  # events an alert's short window needs before it may fire
    notify_webhook_url: str | None = None  # alert notifications as signed JSON POSTs
    notify_webhook_secret: str | None = field(default=None, repr=False)  # HMAC key (secret)
    notify_slack_url: str | None = None  # a Slack incoming-webhook URL

    def __post_init__(self) -> None:
        if not 1 <= self.workload_lifetime <= 900:
            raise ConfigInvalid(
                f"setting 'workload_lifetime': {self.workload_lifetime:g} is not between 1 and "
                "900 seconds (mesh credentials live at most 15 minutes)"
            )
        if self.events_max_attempts < 1 or self.events_base_delay <= 0:
            raise ConfigInvalid(
                "settings 'events_max_attempts' and 'events_base_delay' must be positive"
            )
        if not 0 <= self.trace_sample <= 1:
            raise ConfigInvalid(f"setting 'trace_sample': {self.trace_sample:g} is not from 0 to 1")
        if self.alert_interval <= 0 or self.alert_min_events < 1:
            raise ConfigInvalid("settings 'alert_interval' and 'alert_min_events' must be positive")
        if self.notify_webhook_url and not self.notify_webhook_secret:
            raise ConfigInvalid(
                "setting 'notify_webhook_url' needs 'notify_webhook_secret' (notifications are "
                "signed); set COURTYARD_NOTIFY_WEBHOOK_SECRET"
            )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigInvalid("settings 'tls_cert' and 'tls_key' go together: give both")

    @property
    def is_tls(self) -> bool:
        """True when the gateway terminates TLS (a certificate given or self-signed)."""
        return self.tls_cert is not None or self.tls_self_signed

    @property
    def scheme(self) -> str:
        """``https`` when the gateway terminates TLS, else ``http``."""
        return "https" if self.is_tls else "http"

    @property
    def url(self) -> str:
        """Where clients reach the gateway."""
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def database(self) -> str:
        """The database URL in force."""
        return self.database_url or f"sqlite:///{(self.data_dir / 'courtyard.db').resolve()}"


_ENV_PREFIX = "COURTYARD_"


def _coerce(name: str, value: Any, kind: Any) -> Any:
    target = str(kind)
    if value in (None, "") and "None" in target:
        return None  # an empty variable unsets an optional setting
    try:
        if "Path" in target:
            return Path(str(value)).expanduser()
        if "bool" in target:
            if isinstance(value, bool):
                return value
            lowered = str(value).strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off"}:
                return False
            raise ValueError(value)
        if "int" in target:
            number = int(value)
            if name.endswith("port") and not 0 <= number <= 65535:
                raise ValueError(value)
            if name == "workers" and not 1 <= number <= 64:
                raise ValueError(value)
            return number
        if "float" in target:
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigInvalid(
            f"setting {name!r}: {value!r} is not a valid {_describe(target)}"
        ) from None


def _describe(target: str) -> str:
    for word in ("bool", "int", "float", "Path"):
        if word in target:
            return {"bool": "boolean", "int": "whole number", "float": "number", "Path": "path"}[
                word
            ]
    return "string"


def load_config(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    toml_path: Path | None = None,
) -> NodeConfig:
    """Merge the three sources; unknown keys in the TOML file are an error naming them."""
    known = {f.name: f.type for f in fields(NodeConfig)}
    values: dict[str, Any] = {}
    if toml_path is not None and toml_path.exists():
        try:
            document = tomllib.loads(toml_path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigInvalid(f"{toml_path}: {exc}") from None
        section = document.get("node", document)
        for key, value in section.items():
            name = key.replace("-", "_")
            if name not in known:
                raise ConfigInvalid(f"{toml_path}: unknown setting {key!r}")
            values[name] = value
    for key, value in (environ or {}).items():
        if key.startswith(_ENV_PREFIX):
            name = key[len(_ENV_PREFIX) :].lower()
            if name in known:
                values[name] = value
    for key, value in (flags or {}).items():
        if value is not None:
            values[key] = value
    coerced = {name: _coerce(name, value, known[name]) for name, value in values.items()}
    return NodeConfig(**coerced)
