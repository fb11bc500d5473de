"""The catalog's part of the control-plane REST API (``/api/v1``) and its error documents.

Domain errors become RFC 9457 problem documents here and only here (``problem_for``); the
node installs the exception handlers that call it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

# pydantic (hence FastAPI) needs typing_extensions' TypedDict before Python 3.12.
from typing_extensions import TypedDict

from courtyard.catalog._errors import (
    AppNotFound,
    BundleInvalid,
    CapabilityTaken,
    CatalogError,
    ManifestInvalid,
    RevisionNotFound,
    RouteTaken,
)
from courtyard.catalog._models import Revision
from courtyard.catalog._parsing import manifest_json_schema
from courtyard.catalog._service import Catalog
from courtyard.core import problem

__all__ = ["ManifestErrorDocument", "RevisionDocument", "problem_for", "router"]


class RevisionDocument(TypedDict):
    """One revision of an app as the API shows it; ``manifest`` is the canonical manifest."""

    app: str
    number: int
    digest: str
    bundleDigest: str | None  # JSON member names are camelCase, like the manifest's
    createdAt: float  # seconds since the epoch
    current: bool
    manifest: dict[str, Any]


class ManifestErrorDocument(TypedDict):
    """One entry of the ``errors`` member of an invalid-manifest problem."""

    source: str
    field: str
    message: str


def revision_document(revision: Revision, current: int) -> RevisionDocument:
    """The JSON form of ``revision``; ``current`` is the app's current revision number."""
    return {
        "app": revision.app,
        "number": revision.number,
        "digest": revision.digest,
        "bundleDigest": revision.bundle_digest,
        "createdAt": revision.created_at,
        "current": revision.number == current,
        "manifest": revision.manifest.document(),
    }


def router(catalog: Catalog) -> APIRouter:
    """Routes for revisions and the manifest schema; CatalogErrors propagate to the handlers."""
    api = APIRouter(prefix="/api/v1", tags=["catalog"])

    @api.get("/apps/{name}/revisions", summary="List an app's revisions, oldest first")
    async def list_revisions(name: str) -> list[RevisionDocument]:
        app = await catalog.get(name)
        revisions = await catalog.revisions(name)
        return [revision_document(revision, app.current_revision) for revision in revisions]

    @api.get("/apps/{name}/revisions/{number}", summary="Show one revision of an app")
    async def get_revision(name: str, number: int) -> RevisionDocument:
        app = await catalog.get(name)
        revision = await catalog.revision(name, number)
        return revision_document(revision, app.current_revision)

    @api.get("/schema/manifest", summary="JSON Schema of courtyard.yaml")
    async def manifest_schema() -> dict[str, Any]:
        return manifest_json_schema()

    return api


def problem_for(error: CatalogError) -> tuple[int, dict[str, Any]]:
    """The HTTP status and RFC 9457 problem document for a catalog error."""
    detail = str(error)
    match error:
        case AppNotFound():
            return 404, dict(problem(404, "App not found", detail, app=error.name))
        case RevisionNotFound():
            document = problem(404, "Revision not found", detail, app=error.app)
            return 404, {**document, "revision": error.number}
        case RouteTaken():
            document = problem(409, "Route taken", detail, route=error.route)
            return 409, {**document, "holder": error.holder}
        case CapabilityTaken():
            document = problem(409, "Capability taken", detail, capability=error.capability)
            return 409, {**document, "holder": error.holder}
        case ManifestInvalid():
            errors: list[ManifestErrorDocument] = [
                {"source": p.source, "field": p.field, "message": p.message} for p in error.problems
            ]
            count = len(errors)
            summary = f"the manifest has {count} mistake{'s' if count != 1 else ''}"
            return 422, dict(problem(422, "Invalid manifest", summary, errors=errors))
        case BundleInvalid():
            return 400, dict(problem(400, "Invalid bundle", detail, reason=error.reason))
        case _:
            return 500, dict(problem(500, "Catalog error", detail))
