"""Joins desired state (the catalog) and observed state (the runtime) and tells the data plane.

Error tree::

    LifecycleError
    ├── AppNotDeployable
    ├── DeployRefused
    └── NoEarlierRevision
"""

from courtyard.lifecycle._dataplane import DataPlane, SnapshotPublisher
from courtyard.lifecycle._errors import (
    AppNotDeployable,
    DeployRefused,
    LifecycleError,
    NoEarlierRevision,
)
from courtyard.lifecycle._lifecycle import (
    SYSTEM,
    AuditRecorder,
    Caller,
    Deployment,
    Lifecycle,
    LifecycleConfig,
    Rollout,
    Runtime,
)
from courtyard.lifecycle._specs import mesh_policy, routes_for, workload_for

__all__ = [
    "SYSTEM",
    "AppNotDeployable",
    "AuditRecorder",
    "Caller",
    "DataPlane",
    "DeployRefused",
    "Deployment",
    "Lifecycle",
    "LifecycleConfig",
    "LifecycleError",
    "NoEarlierRevision",
    "Rollout",
    "Runtime",
    "SnapshotPublisher",
    "mesh_policy",
    "routes_for",
    "workload_for",
]
