"""The directory REST API over an in-process app: who may do what, camelCase documents and
RFC 9457 problems. The test app takes the caller from a test-only header."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from courtyard.iam import (
    DuplicateUser,
    Iam,
    IamError,
    InvalidRole,
    NotAuthenticated,
    PermissionDenied,
    UserNotFound,
)
from courtyard.iam.api import directory_router, problem_for

PASSWORD = "correct horse battery"


def build_app(iam: Iam) -> FastAPI:
    app = FastAPI()

    @app.middleware("http")
    async def authenticate(request: Request, call_next):  # type: ignore[no-untyped-def]
        ref = request.headers.get("x-test-user")
        if ref:
            request.state.principal = await iam.principal_of(ref)
        return await call_next(request)

    @app.exception_handler(IamError)
    async def iam_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, IamError)
        status, document = problem_for(exc)
        return JSONResponse(dict(document), status, media_type="application/problem+json")

    app.include_router(directory_router(iam))
    return app


@pytest.fixture
async def client(iam: Iam) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(iam))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


def as_(ref: str) -> dict[str, str]:
    return {"x-test-user": ref}


async def test_without_a_caller_everything_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/me")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["title"] == "Not authenticated"


async def test_admin_manages_the_directory(iam: Iam, client: httpx.AsyncClient) -> None:
    await iam.create_user(None, "root@example.com", "Root", PASSWORD, roles=["platform-admin"])
    admin = as_("root@example.com")
    created = await client.post(
        "/api/v1/users",
        json={"email": "ada@example.com", "name": "Ada", "password": PASSWORD},
        headers=admin,
    )
    assert created.status_code == 201
    ada = created.json()
    assert ada["email"] == "ada@example.com" and ada["hasPassword"] and not ada["totpEnabled"]
    again = await client.post("/api/v1/users", json={"email": "ada@example.com"}, headers=admin)
    assert again.status_code == 409 and again.json()["title"] == "User exists"
    assert (
        await client.post("/api/v1/groups", json={"name": "ops"}, headers=admin)
    ).status_code == 201
    member = await client.put(f"/api/v1/groups/ops/members/{ada['id']}", headers=admin)
    assert member.json()["members"] == [ada["id"]]
    grant = await client.post(
        "/api/v1/roles",
        json={"role": "viewer", "subject": "group:ops", "app": "notes"},
        headers=admin,
    )
    assert grant.status_code == 201
    bad = await client.post(
        "/api/v1/roles", json={"role": "god", "subject": "group:ops"}, headers=admin
    )
    assert bad.status_code == 422
    me = (await client.get("/api/v1/me", headers=as_("ada@example.com"))).json()
    assert me["groups"] == ["ops"] and me["appRoles"] == {"notes": ["viewer"]}
    listed = await client.get("/api/v1/roles", params={"app": "notes"}, headers=admin)
    assert listed.json() == [{"role": "viewer", "subject": "group:ops", "app": "notes"}]
    revoke = await client.delete(
        "/api/v1/roles",
        params={"role": "viewer", "subject": "group:ops", "app": "notes"},
        headers=admin,
    )
    assert revoke.status_code == 204
    patched = await client.patch(
        f"/api/v1/users/{ada['id']}", json={"status": "disabled"}, headers=admin
    )
    assert patched.json()["status"] == "disabled"
    assert (await client.delete(f"/api/v1/users/{ada['id']}", headers=admin)).status_code == 204
    assert (await client.get(f"/api/v1/users/{ada['id']}", headers=admin)).status_code == 404


async def test_a_user_acts_on_themselves_only(iam: Iam, client: httpx.AsyncClient) -> None:
    ada = await iam.create_user(None, "ada@example.com", "Ada", PASSWORD)
    bob = await iam.create_user(None, "bob@example.com", "Bob", PASSWORD)
    me = as_(ada.id)
    assert (await client.get("/api/v1/users", headers=me)).status_code == 403
    assert (await client.get(f"/api/v1/users/{bob.id}", headers=me)).status_code == 403
    assert (await client.get("/api/v1/users/me", headers=me)).json()["id"] == ada.id
    issued = await client.post(
        "/api/v1/users/me/tokens", json={"name": "laptop", "scopes": ["apps:read"]}, headers=me
    )
    assert issued.status_code == 201
    document = issued.json()
    assert document["token"].startswith("cy_pat_") and document["scopes"] == ["apps:read"]
    listed = (await client.get(f"/api/v1/users/{ada.id}/tokens", headers=me)).json()
    assert "token" not in listed[0]
    assert (await client.get(f"/api/v1/users/{bob.id}/tokens", headers=me)).status_code == 403
    _, bob_info = await iam.issue_token(None, bob.id, "x")
    assert (await client.delete(f"/api/v1/tokens/{bob_info.id}", headers=me)).status_code == 404
    assert (await client.delete(f"/api/v1/tokens/{document['id']}", headers=me)).status_code == 204
    weak = await client.put("/api/v1/users/me/password", json={"password": "short"}, headers=me)
    assert weak.status_code == 422 and weak.json()["reason"]
    ok = await client.put(
        "/api/v1/users/me/password", json={"password": "another long one"}, headers=me
    )
    assert ok.status_code == 204
    begin = (await client.post("/api/v1/users/me/totp", headers=me)).json()
    assert begin["uri"].startswith("otpauth://") and begin["secret"]
    wrong = await client.post("/api/v1/users/me/totp/confirm", json={"code": "abc"}, headers=me)
    assert wrong.status_code == 422
    outcome = await iam.login("ada@example.com", "another long one", client="c")
    assert outcome.session
    sessions = (await client.get("/api/v1/users/me/sessions", headers=me)).json()
    assert [s["id"] for s in sessions] == [outcome.session.id]
    assert (
        await client.delete(f"/api/v1/sessions/{outcome.session.id}", headers=as_(bob.id))
    ).status_code == 404
    assert (
        await client.delete(f"/api/v1/sessions/{outcome.session.id}", headers=me)
    ).status_code == 204


async def test_an_auditor_reads_but_does_not_write(iam: Iam, client: httpx.AsyncClient) -> None:
    await iam.create_user(None, "eve@example.com", "Eve", PASSWORD, roles=["auditor"])
    auditor = as_("eve@example.com")
    assert (await client.get("/api/v1/users", headers=auditor)).status_code == 200
    assert (await client.get("/api/v1/groups", headers=auditor)).status_code == 200
    assert (await client.get("/api/v1/roles", headers=auditor)).status_code == 200
    denied = await client.post("/api/v1/groups", json={"name": "x"}, headers=auditor)
    assert denied.status_code == 403 and denied.json()["title"] == "Forbidden"


async def test_service_accounts_and_their_keys(iam: Iam, client: httpx.AsyncClient) -> None:
    await iam.create_user(None, "root@example.com", "Root", PASSWORD, roles=["platform-admin"])
    admin = as_("root@example.com")
    created = await client.post(
        "/api/v1/service-accounts", json={"name": "ci", "title": "CI"}, headers=admin
    )
    assert created.status_code == 201 and created.json()["name"] == "ci"
    key = await client.post(
        "/api/v1/service-accounts/ci/tokens", json={"name": "k", "expiresIn": None}, headers=admin
    )
    assert key.status_code == 201 and key.json()["expiresAt"] is None
    principal = await iam.authenticate_token(key.json()["token"])
    assert principal is not None and principal.id == "svc:ci"
    me = (await client.get("/api/v1/me", headers=as_("svc:ci"))).json()
    assert me["kind"] == "service"
    assert (await client.delete("/api/v1/service-accounts/ci", headers=admin)).status_code == 204
    assert (await client.get("/api/v1/service-accounts", headers=admin)).json() == []


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (UserNotFound("u_1"), 404),
        (DuplicateUser("a@example.com"), 409),
        (InvalidRole("god", "no such role"), 422),
        (PermissionDenied("do that"), 403),
        (NotAuthenticated(), 401),
        (IamError("something odd"), 500),
    ],
)
def test_every_error_has_a_status_and_a_readable_problem(error: IamError, status: int) -> None:
    got, document = problem_for(error)
    assert got == status == document["status"]
    assert document["type"].startswith("https://courtyard.dev/problems/")
    assert document.get("detail") == str(error)
