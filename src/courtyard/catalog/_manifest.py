"""The app manifest (``courtyard.yaml``) as pydantic models: the one definition of what is valid.

YAML uses camelCase names (the Kubernetes habit); Python code reads snake_case attributes.
Unknown fields are mistakes, never ignored, so a typo cannot silently drop a setting.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

from courtyard.catalog._errors import ManifestInvalid
from courtyard.catalog._placeholders import PLATFORM_VARIABLES, find_cycle, placeholder_names
from courtyard.catalog._problems import problems_from
from courtyard.catalog._types import (
    AccessEntry,
    ByteSize,
    Capability,
    Cpu,
    Duration,
    Email,
    EnvName,
    Host,
    HttpPath,
    Kind,
    Label,
    Method,
    NonNegativeDuration,
    Objective,
    PathPattern,
    PlaceholderText,
    Replicas,
    RoutePath,
    SloWindow,
    Stage,
    Threshold,
    Topic,
    fail_at,
    unique,
)
from courtyard.contracts import (
    DEFAULT_COOLDOWN,
    DEFAULT_SLO_WINDOW,
    RemediationAction,
    RemediationSpec,
    Severity,
    SloSpec,
)
from courtyard.core import is_dns_label

API_VERSION = "courtyard.dev/v1alpha1"

# Paths the platform itself serves on every host (DESIGN.md, "One port"); a host-less route
# may not claim them.
RESERVED_PREFIXES = (
    "/api/",
    "/oauth2/",
    "/.well-known/",
    "/login/",
    "/logout/",
    "/account/",
    "/portal/",
    "/healthz/",
    "/readyz/",
    "/metrics/",
)

DEFAULT_BODY_SIZE = 10 * 2**20


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=False,
        serialize_by_alias=True,
    )


class ManifestMetadata(_Model):
    """Who the app is and who answers for it."""

    name: Label
    title: Annotated[str | None, Field(min_length=1, max_length=200)] = None
    owner: Label
    business_owner: Email
    tags: Annotated[list[Label], AfterValidator(unique)] = Field(default_factory=list)
    cost_center: Annotated[str | None, Field(min_length=1, max_length=100)] = None
    description: Annotated[str | None, Field(max_length=4000)] = None

    @model_validator(mode="after")
    def _default_title(self) -> Self:
        return self if self.title is not None else self.model_copy(update={"title": self.name})


class HealthCheck(_Model):
    """How the runtime decides an instance is ready: an HTTP GET of ``path``, or a TCP connect."""

    path: HttpPath | None = None
    tcp: bool = False
    interval: Duration = 1.0
    timeout: Duration = 2.0
    failure_threshold: Threshold = 3

    @model_validator(mode="after")
    def _path_or_tcp(self) -> Self:
        if self.tcp and self.path is not None:
            fail_at([(("path",), "not allowed together with tcp: true", self.path)])
        if not self.tcp and self.path is None:
            return self.model_copy(update={"path": "/healthz"})
        return self


class ResourceLimits(_Model):
    """Upper bounds for one instance; ``None`` means no limit."""

    memory: ByteSize | None = None
    cpu: Cpu | None = None


class RunSpec(_Model):
    """How an instance runs: a command, its environment and how many replicas."""

    command: Annotated[list[PlaceholderText], Field(min_length=1)]
    env: dict[EnvName, PlaceholderText] = Field(default_factory=dict)
    replicas: Replicas = 1
    health: HealthCheck = Field(default_factory=lambda: HealthCheck(tcp=True))
    ready_timeout: Duration = 30.0
    drain_timeout: NonNegativeDuration = 30.0
    resources: ResourceLimits = Field(default_factory=ResourceLimits)

    @model_validator(mode="after")
    def _known_references(self) -> Self:
        known = PLATFORM_VARIABLES | set(self.env)
        problems: list[tuple[tuple[str | int, ...], str, Any]] = []
        fields: list[tuple[tuple[str | int, ...], str]] = [
            (("command", index), arg) for index, arg in enumerate(self.command)
        ]
        fields += [(("env", key), value) for key, value in self.env.items()]
        for loc, text in fields:
            unknown = [name for name in placeholder_names(text) if name not in known]
            if unknown:
                problems.append((loc, _unknown_message(unknown[0]), text))
        if not problems and (cycle := find_cycle(self.env)) is not None:
            problems.append((("env", cycle[0]), f"placeholders loop: {' -> '.join(cycle)}", ""))
        if problems:
            fail_at(problems)
        return self


def _unknown_message(name: str) -> str:
    return (
        f"unknown placeholder ${{{name}}}: use one of {', '.join(sorted(PLATFORM_VARIABLES))} "
        "or a key of spec.run.env (write $$ for a literal $)"
    )


class RouteSpec(_Model):
    """A path prefix (and optionally a host) whose requests the gateway sends to this app."""

    path: RoutePath
    host: Host | None = None
    max_body_size: ByteSize = DEFAULT_BODY_SIZE

    @model_validator(mode="after")
    def _not_reserved(self) -> Self:
        if self.host is None and (self.path == "/" or self.path.startswith(RESERVED_PREFIXES)):
            fail_at([(("path",), f"{self.path} is reserved for the platform", self.path)])
        return self


class AccessSpec(_Model):
    """Who may open the app: ``user:``, ``group:`` and ``role:`` entries, or everyone."""

    allow: Annotated[list[AccessEntry], AfterValidator(unique)] = Field(default_factory=list)
    public: bool = False


class ConsumeSpec(_Model):
    """A service this app calls through the mesh, and which of its paths and methods."""

    service: Label
    paths: Annotated[list[PathPattern], Field(min_length=1), AfterValidator(unique)] = Field(
        default_factory=lambda: ["/**"]
    )
    methods: Annotated[list[Method], Field(min_length=1), AfterValidator(unique)] = Field(
        default_factory=lambda: ["*"]
    )


class AcceptSpec(_Model):
    """A caller this app accepts through the mesh, and which of its paths and methods
    (Dapr accessControl-like). Without ``accepts`` every caller that declares the call in its
    own ``consumes`` is accepted; with it, only the callers listed here (``from: "*"`` for
    any declared caller)."""

    from_: Annotated[str, Field(alias="from", min_length=1, max_length=63)]
    paths: Annotated[list[PathPattern], Field(min_length=1), AfterValidator(unique)] = Field(
        default_factory=lambda: ["/**"]
    )
    methods: Annotated[list[Method], Field(min_length=1), AfterValidator(unique)] = Field(
        default_factory=lambda: ["*"]
    )

    @model_validator(mode="after")
    def _caller(self) -> Self:
        if self.from_ != "*" and not is_dns_label(self.from_):
            fail_at([(("from",), "expected an app name or '*'", self.from_)])
        return self


class SubscribeSpec(_Model):
    """A topic this app receives, and the path of its handler (events are POSTed there
    through the mesh as CloudEvents 1.0 JSON)."""

    topic: Topic
    handler: PathPattern


class SloDeclaration(_Model):
    """A service level objective: ``availability`` (share of answers that are not 5xx) or
    ``latency`` (share of answers within ``threshold``), over a rolling ``window``."""

    name: Label
    indicator: Literal["availability", "latency"]
    objective: Objective
    window: SloWindow = DEFAULT_SLO_WINDOW
    threshold: Duration | None = None
    description: Annotated[str | None, Field(max_length=1000)] = None

    @model_validator(mode="after")
    def _threshold_fits(self) -> Self:
        if self.indicator == "latency" and self.threshold is None:
            fail_at([(("threshold",), "required for a latency SLO", None)])
        if self.indicator == "availability" and self.threshold is not None:
            fail_at([(("threshold",), "only for a latency SLO", self.threshold)])
        return self


class RemediationDeclaration(_Model):
    """A runbook action the platform runs by itself when an SLO alert of the app fires."""

    severity: Severity = "page"
    action: RemediationAction
    slo: Label | None = None
    cooldown: Duration = DEFAULT_COOLDOWN


class ManifestSpec(_Model):
    """What the app does: its stage, how it runs, where it is routed and what it provides."""

    stage: Stage = "prototype"
    run: RunSpec | None = None
    routes: list[RouteSpec] = Field(default_factory=list)
    access: AccessSpec = Field(default_factory=AccessSpec)
    provides: Annotated[list[Capability], AfterValidator(unique)] = Field(default_factory=list)
    consumes: list[ConsumeSpec] = Field(default_factory=list)
    accepts: list[AcceptSpec] | None = None
    publishes: Annotated[list[Topic], AfterValidator(unique)] = Field(default_factory=list)
    subscribes: list[SubscribeSpec] = Field(default_factory=list)
    slos: list[SloDeclaration] = Field(default_factory=list)
    remediation: list[RemediationDeclaration] = Field(default_factory=list)

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        problems: list[tuple[tuple[str | int, ...], str, Any]] = []
        names: dict[str, int] = {}
        for index, slo in enumerate(self.slos):
            first = names.setdefault(slo.name, index)
            if first != index:
                problems.append((("slos", index, "name"), f"duplicate of slos[{first}]", slo.name))
        for index, action in enumerate(self.remediation):
            if action.slo is not None and action.slo not in names:
                message = f"no SLO named {action.slo} in spec.slos"
                problems.append((("remediation", index, "slo"), message, action.slo))
        seen: dict[tuple[str | None, str], int] = {}
        for index, route in enumerate(self.routes):
            first = seen.setdefault((route.host, route.path), index)
            if first != index:
                problems.append((("routes", index), f"duplicate of routes[{first}]", route.path))
        services: dict[str, int] = {}
        for index, consumer in enumerate(self.consumes):
            first = services.setdefault(consumer.service, index)
            if first != index:
                message = f"duplicate of consumes[{first}] (list all paths in one entry)"
                problems.append((("consumes", index, "service"), message, consumer.service))
        if problems:
            fail_at(problems)
        return self


class Manifest(_Model):
    """A whole ``courtyard.yaml``: envelope, metadata and spec, with every default filled in."""

    api_version: Literal["courtyard.dev/v1alpha1"]
    kind: Kind
    metadata: ManifestMetadata
    spec: ManifestSpec = Field(default_factory=ManifestSpec)

    @model_validator(mode="after")
    def _fit_kind(self) -> Self:
        spec, name = self.spec, self.metadata.name
        problems: list[tuple[tuple[str | int, ...], str, Any]] = []
        if self.kind == "Interface":
            if spec.run is not None:
                problems.append((("spec", "run"), "not allowed for kind Interface", None))
            if spec.routes:
                problems.append((("spec", "routes"), "not allowed for kind Interface", None))
        elif spec.run is None:
            problems.append((("spec", "run"), f"required for kind {self.kind}", None))
        if problems:
            fail_at(problems)
        if self.kind == "Application" and "routes" not in spec.model_fields_set:
            routes = [RouteSpec(path=f"/apps/{name}/")]
            return self.model_copy(update={"spec": spec.model_copy(update={"routes": routes})})
        return self

    @property
    def name(self) -> str:
        """The app's name (``metadata.name``)."""
        return self.metadata.name

    def slo_specs(self) -> list[SloSpec]:
        """The app's SLOs in the telemetry service's vocabulary."""
        return [
            SloSpec(
                app=self.name,
                name=slo.name,
                indicator=slo.indicator,
                objective=slo.objective,
                window=slo.window,
                threshold=slo.threshold,
            )
            for slo in self.spec.slos
        ]

    def remediation_specs(self) -> list[RemediationSpec]:
        """The app's runbook actions in the telemetry service's vocabulary."""
        return [
            RemediationSpec(
                app=self.name,
                severity=item.severity,
                action=item.action,
                slo=item.slo,
                cooldown=item.cooldown,
            )
            for item in self.spec.remediation
        ]

    def document(self) -> dict[str, Any]:
        """The canonical JSON-able form: YAML field names, every default filled in."""
        return self.model_dump(mode="json", by_alias=True)

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> Manifest:
        """Rebuild a manifest from :meth:`document` output (or any valid manifest mapping).

        Raises ManifestInvalid (source ``(document)``) when the mapping is not a valid manifest.
        """
        try:
            return cls.model_validate(document)
        except ValidationError as exc:
            raise ManifestInvalid(problems_from(exc, "(document)")) from None
