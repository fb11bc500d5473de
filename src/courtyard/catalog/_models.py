"""What the catalog hands out: apps, their numbered revisions and the outcome of a register.

Frozen dataclasses, so a caller can keep one while the catalog moves on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Literal

from courtyard.catalog._manifest import Manifest
from courtyard.catalog._types import Kind, Stage

DesiredState = Literal["running", "stopped"]


@dataclass(frozen=True)
class Revision:
    """One deployed version of an app: a manifest, optionally a bundle, numbered 1, 2, 3...

    ``digest`` is sha256 over the canonical manifest JSON and the bundle digest, so the same
    deployment always has the same digest.
    """

    app: str
    number: int
    digest: str
    bundle_digest: str | None
    manifest: Manifest
    created_at: float  # seconds since the epoch


@dataclass(frozen=True)
class App:
    """An app in the catalog as of its current revision."""

    name: str
    kind: Kind
    title: str
    owner: str
    business_owner: str
    stage: Stage
    tags: tuple[str, ...]
    description: str | None
    current_revision: int
    desired_state: DesiredState
    created_at: float  # seconds since the epoch
    updated_at: float
    manifest: Manifest


@dataclass(frozen=True)
class Registration:
    """The result of :meth:`Catalog.register`.

    ``created`` is False when the deployment matched the current revision's digest, in which
    case ``revision`` is that current revision and nothing changed.
    """

    app: App
    revision: Revision
    created: bool


def revision_digest(manifest: Manifest, bundle_digest: str | None) -> str:
    """sha256 hex over the canonical manifest JSON and the bundle digest (if any)."""
    canonical = json.dumps(
        manifest.document(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    hasher = hashlib.sha256()
    hasher.update(b"courtyard-revision-v1\0")
    hasher.update(canonical.encode())
    hasher.update(b"\0")
    hasher.update((bundle_digest or "").encode())
    return hasher.hexdigest()


def make_app(
    manifest: Manifest,
    *,
    current_revision: int,
    desired_state: DesiredState,
    created_at: float,
    updated_at: float,
) -> App:
    """An :class:`App` from its current manifest and its catalog bookkeeping."""
    metadata = manifest.metadata
    return App(
        name=metadata.name,
        kind=manifest.kind,
        title=metadata.title or metadata.name,
        owner=metadata.owner,
        business_owner=metadata.business_owner,
        stage=manifest.spec.stage,
        tags=tuple(metadata.tags),
        description=metadata.description,
        current_revision=current_revision,
        desired_state=desired_state,
        created_at=created_at,
        updated_at=updated_at,
        manifest=manifest,
    )


RouteKey = tuple[str, str]  # (host or "" for any host, path)


def route_keys(manifest: Manifest) -> list[RouteKey]:
    """The (host, path) pairs a manifest claims, in manifest order."""
    return [(route.host or "", route.path) for route in manifest.spec.routes or []]


def show_route(key: RouteKey) -> str:
    """``host/path`` or ``path``, as people write a route."""
    host, path = key
    return f"{host}{path}"
