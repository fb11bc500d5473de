"""The catalog: every app in the fleet, its manifest, its revisions and what it claims.

It reads and validates ``courtyard.yaml``, keeps numbered revisions, ingests app bundles and
holds routes and capabilities unique across the fleet. HTTP routes live in ``catalog.api``.
"""

from courtyard.catalog._bundles import Bundle, BundleStore
from courtyard.catalog._errors import (
    AppNotFound,
    BundleInvalid,
    CapabilityTaken,
    CatalogError,
    ManifestInvalid,
    ManifestProblem,
    RevisionNotFound,
    RouteTaken,
)
from courtyard.catalog._manifest import (
    AccessSpec,
    ConsumeSpec,
    HealthCheck,
    Manifest,
    ManifestMetadata,
    ManifestSpec,
    ResourceLimits,
    RouteSpec,
    RunSpec,
)
from courtyard.catalog._models import App, DesiredState, Registration, Revision
from courtyard.catalog._packing import make_bundle
from courtyard.catalog._parsing import manifest_json_schema, parse_manifest
from courtyard.catalog._placeholders import expand_environment, expand_placeholders
from courtyard.catalog._service import Catalog
from courtyard.catalog._sql import SqlCatalogStore
from courtyard.catalog._store import CatalogStore, MemoryCatalogStore

__all__ = [
    "AccessSpec",
    "App",
    "AppNotFound",
    "Bundle",
    "BundleInvalid",
    "BundleStore",
    "CapabilityTaken",
    "Catalog",
    "CatalogError",
    "CatalogStore",
    "ConsumeSpec",
    "DesiredState",
    "HealthCheck",
    "Manifest",
    "ManifestInvalid",
    "ManifestMetadata",
    "ManifestProblem",
    "ManifestSpec",
    "MemoryCatalogStore",
    "Registration",
    "ResourceLimits",
    "Revision",
    "RevisionNotFound",
    "RouteSpec",
    "RouteTaken",
    "RunSpec",
    "SqlCatalogStore",
    "expand_environment",
    "expand_placeholders",
    "make_bundle",
    "manifest_json_schema",
    "parse_manifest",
]
