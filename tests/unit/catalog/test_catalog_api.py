"""The catalog's REST routes over an in-process ASGI transport, and its problem documents."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from courtyard.catalog import (
    AppNotFound,
    BundleInvalid,
    CapabilityTaken,
    Catalog,
    CatalogError,
    ManifestInvalid,
    ManifestProblem,
    MemoryCatalogStore,
    RevisionNotFound,
    RouteTaken,
    manifest_json_schema,
    parse_manifest,
)
from courtyard.catalog.api import problem_for, router
from courtyard.core import FakeClock

MANIFEST = """\
apiVersion: courtyard.dev/v1alpha1
kind: Application
metadata: {name: notes, owner: team-a, businessOwner: a@example.com}
spec:
  run: {command: [python, app.py], replicas: REPLICAS}
"""


@pytest.fixture
async def catalog() -> Catalog:
    catalog = Catalog(MemoryCatalogStore(), clock=FakeClock(start=1_700_000_000.0))
    await catalog.register(parse_manifest(MANIFEST.replace("REPLICAS", "1")), "a" * 64)
    await catalog.register(parse_manifest(MANIFEST.replace("REPLICAS", "2")))
    return catalog


@pytest.fixture
async def client(catalog: Catalog) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.include_router(router(catalog))

    @app.exception_handler(CatalogError)
    async def catalog_error(_: Request, exc: CatalogError) -> JSONResponse:
        status, document = problem_for(exc)
        return JSONResponse(document, status, media_type="application/problem+json")

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://courtyard.test") as client:
        yield client


async def test_list_revisions(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/apps/notes/revisions")
    assert response.status_code == 200
    body = response.json()
    assert [(r["number"], r["current"]) for r in body] == [(1, False), (2, True)]
    assert body[0]["bundleDigest"] == "a" * 64 and body[1]["bundleDigest"] is None
    assert body[0]["createdAt"] == 1_700_000_000.0
    assert body[1]["manifest"]["spec"]["run"]["replicas"] == 2
    assert len(body[0]["digest"]) == 64


async def test_one_revision(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/apps/notes/revisions/1")
    assert response.status_code == 200
    assert response.json()["manifest"]["metadata"]["name"] == "notes"


async def test_unknown_app_and_revision_are_problems(client: httpx.AsyncClient) -> None:
    missing = await client.get("/api/v1/apps/nope/revisions")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["title"] == "App not found"
    assert missing.json()["app"] == "nope"
    revision = await client.get("/api/v1/apps/notes/revisions/7")
    assert revision.status_code == 404
    assert revision.json()["revision"] == 7


async def test_manifest_schema(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/schema/manifest")
    assert response.status_code == 200
    assert response.json() == manifest_json_schema()


def test_problem_documents() -> None:
    status, document = problem_for(RouteTaken("/apps/x/", "billing"))
    assert (status, document["holder"], document["route"]) == (409, "billing", "/apps/x/")
    assert document["type"] == "https://courtyard.dev/problems/route-taken"
    assert "billing" in document["detail"]
    status, document = problem_for(CapabilityTaken("payments", "stripe"))
    assert (status, document["holder"]) == (409, "stripe")
    status, document = problem_for(AppNotFound("x"))
    assert (status, document["status"]) == (404, 404)
    status, document = problem_for(RevisionNotFound("x", 3))
    assert (status, document["revision"]) == (404, 3)
    status, document = problem_for(BundleInvalid("too big"))
    assert (status, document["reason"]) == (400, "too big")
    problems = [
        ManifestProblem("courtyard.yaml", "metadata.owner", "required"),
        ManifestProblem("courtyard.yaml", "spec.run.replicas", "expected an integer"),
    ]
    status, document = problem_for(ManifestInvalid(problems))
    assert status == 422
    assert document["detail"] == "the manifest has 2 mistakes"
    assert document["errors"] == [
        {"source": "courtyard.yaml", "field": "metadata.owner", "message": "required"},
        {
            "source": "courtyard.yaml",
            "field": "spec.run.replicas",
            "message": "expected an integer",
        },
    ]
    status, document = problem_for(CatalogError("busy"))
    assert status == 500
