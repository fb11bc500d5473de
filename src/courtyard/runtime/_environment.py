"""What an instance's process is started with: argv and a deliberately small environment.

Apps never inherit the node's environment: it may hold the platform's own secrets. They get
PATH (with the platform's Python first, so ``python`` in a manifest is the venv's), HOME,
locale and TZ, the platform's variables, and what the operator and the manifest add.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from courtyard.core import is_dns_label
from courtyard.runtime._config import RuntimeConfig
from courtyard.runtime._errors import InvalidSpec
from courtyard.runtime._models import WorkloadSpec
from courtyard.runtime._placeholders import expand_environment, expand_placeholders

LOOPBACK = "127.0.0.1"
PLATFORM_KEYS = (
    "COURTYARD_APP",
    "COURTYARD_INSTANCE",
    "COURTYARD_MESH_URL",
    "COURTYARD_NODE_ID",
    "COURTYARD_PLATFORM_URL",
    "COURTYARD_REVISION",
    "COURTYARD_WORKLOAD_CREDENTIAL",
    "HOST",
    "PORT",
)
# Taken from the node's environment when set; nothing else of it reaches an app.
INHERITED_KEYS = ("HOME", "LANG", "LC_ALL", "TZ")
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True)
class LaunchPlan:
    """The argv and environment of one process of one instance."""

    argv: tuple[str, ...]
    env: dict[str, str]


def launch_plan(
    spec: WorkloadSpec,
    config: RuntimeConfig,
    *,
    instance_id: str,
    port: int,
    node_env: Mapping[str, str],
    python_dir: str,
    workload: Mapping[str, str] | None = None,
) -> LaunchPlan:
    """Build argv and env for one process (pure; raises PlaceholderError on a bad placeholder).

    Precedence, lowest first: inherited basics, ``config.extra_env``, ``spec.env``, platform
    variables (which a spec may not set; :func:`check_spec` refuses that). ``workload``: the
    mesh variables of an instance that has a workload credential (see ``_workload``).
    """
    platform = {
        "PORT": str(port),
        "HOST": LOOPBACK,
        "COURTYARD_APP": spec.app,
        "COURTYARD_REVISION": str(spec.revision),
        "COURTYARD_INSTANCE": instance_id,
        "COURTYARD_PLATFORM_URL": config.platform_url,
        "COURTYARD_NODE_ID": config.node_id,
        **(workload or {}),
    }
    basics = {key: node_env[key] for key in INHERITED_KEYS if key in node_env}
    basics["PATH"] = os.pathsep.join([python_dir, node_env.get("PATH") or DEFAULT_PATH])
    # Python apps' output reaches the log as it is printed, not when a buffer fills.
    basics["PYTHONUNBUFFERED"] = "1"
    variables = {**config.extra_env, **platform}
    own = expand_environment(spec.env, variables)
    variables = {**config.extra_env, **own, **platform}
    argv = tuple(expand_placeholders(arg, variables) for arg in spec.command)
    return LaunchPlan(argv=argv, env={**basics, **config.extra_env, **own, **platform})


def check_spec(
    spec: WorkloadSpec, config: RuntimeConfig, workload: Mapping[str, str] | None = None
) -> None:
    """Refuse a spec that cannot run, before anything starts (InvalidSpec, PlaceholderError).

    ``workload``: the mesh variables its instances will get (values do not matter here).
    """

    def refuse(reason: str) -> None:
        raise InvalidSpec(spec.app, reason)

    if not is_dns_label(spec.app):
        refuse("the app name must be an RFC 1123 label (a-z, 0-9, '-', at most 63 characters)")
    if spec.revision < 0:
        refuse(f"revision must be 0 or more, not {spec.revision}")
    if not spec.command or not spec.command[0]:
        refuse("the command is empty")
    if spec.replicas < 0:
        refuse(f"replicas must be 0 or more, not {spec.replicas}")
    if spec.bundle is not None and not spec.bundle.is_dir():
        refuse(f"the bundle {spec.bundle} is not a folder")
    if spec.health_path is not None and (
        not spec.health_path.startswith("/") or any(c.isspace() for c in spec.health_path)
    ):
        refuse(f"the health path must start with '/' and hold no spaces: {spec.health_path!r}")
    for name, value in (
        ("health_timeout", spec.health_timeout),
        ("ready_timeout", spec.ready_timeout),
        ("drain_timeout", spec.drain_timeout),
    ):
        if value <= 0:
            refuse(f"{name} must be more than 0, not {value}")
    if spec.health_interval is not None and spec.health_interval <= 0:
        refuse(f"health_interval must be more than 0, not {spec.health_interval}")
    if spec.failure_threshold < 1:
        refuse(f"failure_threshold must be 1 or more, not {spec.failure_threshold}")
    if spec.memory_bytes is not None and spec.memory_bytes < 1024 * 1024:
        refuse(f"memory_bytes must be at least 1 MiB, not {spec.memory_bytes}")
    if spec.cpu_millis is not None and spec.cpu_millis < 1:
        refuse(f"cpu_millis must be 1 or more, not {spec.cpu_millis}")
    reserved = sorted(set(spec.env) & set(PLATFORM_KEYS))
    if reserved:
        refuse(f"env may not set {', '.join(reserved)}: the platform sets them")
    # A trial expansion finds unknown placeholders now rather than in every instance.
    launch_plan(
        spec,
        config,
        instance_id=f"{spec.app}-check",
        port=1,
        node_env={},
        python_dir="",
        workload=workload,
    )
