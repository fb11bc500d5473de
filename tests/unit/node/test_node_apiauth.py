"""Who calls the control-plane API: the admin token, API tokens and OAuth access tokens of the
real IAM service and OpenID provider, the access rule, and the API with IAM's routers."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import httpx
import pytest

from courtyard.audit import AuditConfig, AuditLog, MemoryAuditStore
from courtyard.catalog import BundleStore, Catalog, MemoryCatalogStore
from courtyard.iam import Iam, OidcProvider, Principal
from courtyard.iam import api as iam_api
from courtyard.lifecycle import DataPlane, Lifecycle
from courtyard.node import build_api
from courtyard.node._apiauth import NODE_ADMIN, ApiAuthenticator, permits
from courtyard.node._controlplane import ApiExtras
from fakes import FakeRuntime, RecordingPublisher

from .conftest import service_token, signed_in, user_token

ADMIN_TOKEN = "admin-t0ken"


@pytest.fixture
def authenticator(iam: Iam, oidc: OidcProvider) -> ApiAuthenticator:
    return ApiAuthenticator(ADMIN_TOKEN, iam, oidc)


# -- authenticate ------------------------------------------------------------------------------


async def test_the_admin_token_is_the_node_admin(authenticator: ApiAuthenticator) -> None:
    assert await authenticator.authenticate(f"Bearer {ADMIN_TOKEN}") is NODE_ADMIN
    assert await authenticator.authenticate(f"bearer  {ADMIN_TOKEN} ") is NODE_ADMIN
    assert NODE_ADMIN.is_admin


@pytest.mark.parametrize(
    "header",
    [
        "Bearer wrong",
        f"Bearer {ADMIN_TOKEN}x",
        f"Basic {ADMIN_TOKEN}",
        ADMIN_TOKEN,
        "Bearer ",
        "Bearer cy_pat_nonsense",
        "Bearer eyJhbGciOiJub25lIn0.e30.",
    ],
)
async def test_anything_else_is_nobody(authenticator: ApiAuthenticator, header: str) -> None:
    assert await authenticator.authenticate(header) is None


async def test_without_iam_only_the_admin_token_works(iam: Iam) -> None:
    pat_owner = await iam.create_user(None, "ann@example.com", "Ann")
    pat, _ = await iam.issue_token(None, pat_owner.id, "laptop")
    alone = ApiAuthenticator(ADMIN_TOKEN)
    assert await alone.authenticate(f"Bearer {pat}") is None
    assert await alone.authenticate(f"Bearer {ADMIN_TOKEN}") is NODE_ADMIN


async def test_an_api_token_is_its_owner(authenticator: ApiAuthenticator, iam: Iam) -> None:
    user = await iam.create_user(None, "ann@example.com", "Ann", roles=["auditor"])
    pat, info = await iam.issue_token(None, user.id, "laptop", scopes=["apps:read"])

    principal = await authenticator.authenticate(f"Bearer {pat}")
    assert principal is not None
    assert (principal.kind, principal.id, principal.email) == ("user", user.id, user.email)
    assert principal.roles == ("auditor",) and principal.scopes == ("apps:read",)
    assert principal.auth == "token"

    await iam.revoke_token(None, info.id)
    assert await authenticator.authenticate(f"Bearer {pat}") is None


async def test_a_service_api_key_is_the_service(authenticator: ApiAuthenticator, iam: Iam) -> None:
    await iam.create_service_account(None, "backup")
    key, _ = await iam.issue_token(None, "svc:backup", "nightly")
    principal = await authenticator.authenticate(f"Bearer {key}")
    assert principal is not None and (principal.kind, principal.id) == ("service", "svc:backup")


async def test_a_client_credentials_token_is_a_service_with_its_scopes(
    authenticator: ApiAuthenticator, oidc: OidcProvider
) -> None:
    client, _, access = await service_token(oidc)
    principal = await authenticator.authenticate(f"Bearer {access}")
    assert principal is not None
    assert (principal.kind, principal.id) == ("service", f"svc:{client.client_id}")
    assert principal.auth == "oidc" and set(principal.scopes) == {"groups", "profile"}
    assert principal.roles == () and not principal.is_admin


async def test_a_revoked_access_token_is_nobody(
    authenticator: ApiAuthenticator, oidc: OidcProvider
) -> None:
    client, secret, access = await service_token(oidc)
    await oidc.revoke(
        {"token": access, "client_id": client.client_id, "client_secret": secret}, None
    )
    assert await authenticator.authenticate(f"Bearer {access}") is None


async def test_an_access_token_for_another_audience_is_nobody(
    authenticator: ApiAuthenticator, oidc: OidcProvider
) -> None:
    # RFC 9068 §4: a token issued for the notes app alone must not open the platform API.
    _, _, access = await service_token(oidc, audience=("notes",))
    assert await authenticator.authenticate(f"Bearer {access}") is None


async def test_a_user_access_token_is_the_user_until_they_are_gone(
    authenticator: ApiAuthenticator, iam: Iam, oidc: OidcProvider
) -> None:
    user_id, cookie = await signed_in(iam, "ann@example.com", roles=["auditor"])
    _, access, _ = await user_token(oidc, cookie)

    principal = await authenticator.authenticate(f"Bearer {access}")
    assert principal is not None
    assert (principal.kind, principal.id, principal.auth) == ("user", user_id, "oidc")
    assert principal.roles == ("auditor",)
    assert set(principal.scopes) == {"openid", "profile"}

    await iam.delete_user(None, user_id)
    assert await authenticator.authenticate(f"Bearer {access}") is None


async def test_a_disabled_users_access_token_is_nobody(
    authenticator: ApiAuthenticator, iam: Iam, oidc: OidcProvider
) -> None:
    user_id, cookie = await signed_in(iam, "ann@example.com", roles=["platform-admin"])
    _, access, _ = await user_token(oidc, cookie)
    await iam.update_user(None, user_id, status="disabled")
    assert await authenticator.authenticate(f"Bearer {access}") is None


# -- permits -----------------------------------------------------------------------------------


def principal(*roles: str) -> Principal:
    return Principal(
        kind="user",
        id="u_1",
        email="u@example.com",
        name="U",
        groups=(),
        roles=roles,
        app_roles=MappingProxyType({}),
        auth="token",
        session_id=None,
    )


@pytest.mark.parametrize(
    ("method", "path", "nobody", "auditor", "admin"),
    [
        ("GET", "/api/v1/audit", False, True, True),
        ("HEAD", "/api/v1/audit/verify", False, True, True),
        ("POST", "/api/v1/audit/archive", False, False, True),
        ("GET", "/api/v1/apps", True, True, True),
        ("GET", "/api/v1/apps/notes/logs", True, True, True),
        ("POST", "/api/v1/apps", False, False, True),
        ("DELETE", "/api/v1/apps/notes", False, False, True),
        ("PUT", "/api/v1/schema", False, False, True),
        ("GET", "/api/v1/node", True, True, True),
        ("POST", "/api/v1/users/me/tokens", True, True, True),
        ("DELETE", "/api/v1/users/u_2", True, True, True),
    ],
)
def test_permits(method: str, path: str, nobody: bool, auditor: bool, admin: bool) -> None:
    assert permits(principal(), method, path) is nobody
    assert permits(principal("auditor"), method, path) is auditor
    assert permits(principal("platform-admin"), method, path) is admin
    assert permits(NODE_ADMIN, method, path) is True


@pytest.mark.parametrize(
    ("scopes", "auth", "method", "path", "allowed"),
    [
        ((), "token", "POST", "/api/v1/apps", True),  # an unscoped API token: all its owner may
        (("apps:read",), "token", "GET", "/api/v1/apps", True),
        (("apps:read",), "token", "POST", "/api/v1/apps", False),
        (("apps:write",), "token", "POST", "/api/v1/apps", True),
        (("apps:write",), "token", "GET", "/api/v1/audit", False),
        (("audit:read",), "token", "GET", "/api/v1/audit", True),
        (("iam:read",), "token", "POST", "/api/v1/users", False),
        (("iam:write",), "token", "POST", "/api/v1/users", True),
        (("apps:read",), "token", "GET", "/api/v1/me", True),  # who-am-I needs no scope
        (("openid", "profile"), "oidc", "GET", "/api/v1/apps", False),  # no API scope
        ((), "oidc", "GET", "/api/v1/apps", False),
        (("openid", "apps:read"), "oidc", "GET", "/api/v1/apps", True),
    ],
)
def test_scopes_narrow_what_a_token_reaches(
    scopes: tuple[str, ...], auth: str, method: str, path: str, allowed: bool
) -> None:
    caller = dataclasses.replace(NODE_ADMIN, scopes=scopes, auth=auth)
    assert permits(caller, method, path) is allowed


# -- the API with IAM --------------------------------------------------------------------------


@dataclass
class Api:
    http: httpx.AsyncClient
    audit: AuditLog


@pytest.fixture
async def api(tmp_path: Path, iam: Iam, oidc: OidcProvider) -> AsyncIterator[Api]:
    runtime = FakeRuntime()
    dataplane = DataPlane(RecordingPublisher())
    dataplane.bind_endpoints(runtime.endpoints)
    audit = await AuditLog.open(AuditConfig(data_dir=tmp_path / "data"), MemoryAuditStore())
    lifecycle = Lifecycle(
        Catalog(MemoryCatalogStore()), BundleStore(tmp_path / "b"), runtime, dataplane, audit
    )
    extras = ApiExtras(
        authenticator=ApiAuthenticator(ADMIN_TOKEN, iam, oidc),
        routers=(iam_api.directory_router(iam),),
    )
    app = build_api(lifecycle, audit, ADMIN_TOKEN, lambda: {"version": "test"}, extras)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://cp"
    ) as http:
        yield Api(http, audit)
    await lifecycle.aclose()
    await audit.aclose()


MANIFEST = """\
apiVersion: courtyard.dev/v1alpha1
kind: Application
metadata: {name: notes, owner: team-a, businessOwner: a@example.com}
spec:
  run: {command: ["python", "app.py"]}
  routes: [{path: /apps/notes/}]
"""


async def test_a_users_token_reads_but_may_not_deploy(api: Api, iam: Iam) -> None:
    user = await iam.create_user(None, "ann@example.com", "Ann")
    pat, _ = await iam.issue_token(None, user.id, "laptop")
    bearer = {"Authorization": f"Bearer {pat}"}

    listing = await api.http.get("/api/v1/apps", headers=bearer)
    assert listing.status_code == 200 and listing.json() == []

    refused = await api.http.post(
        "/api/v1/apps",
        content=MANIFEST,
        headers={**bearer, "Content-Type": "application/yaml", "X-Request-Id": "r-7"},
    )
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["status"] == 403

    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    entries = (
        await api.http.get("/api/v1/audit", params={"action": "access.deny"}, headers=admin)
    ).json()["entries"]
    [deny] = entries
    assert deny["actor"]["id"] == user.id and deny["actor"]["kind"] == "user"
    assert deny["outcome"] == "denied" and deny["requestId"] == "r-7"
    assert deny["target"] == "api:POST /api/v1/apps"
    assert pat not in str(entries)
    assert (await api.http.get("/api/v1/apps", headers=admin)).json() == []  # nothing deployed


async def test_me_answers_with_the_tokens_owner(api: Api, iam: Iam) -> None:
    user = await iam.create_user(None, "ann@example.com", "Ann", roles=["auditor"])
    pat, _ = await iam.issue_token(None, user.id, "laptop", scopes=["apps:read"])
    me = await api.http.get("/api/v1/me", headers={"Authorization": f"Bearer {pat}"})
    assert me.status_code == 200
    body = me.json()
    assert (body["kind"], body["id"], body["email"]) == ("user", user.id, "ann@example.com")
    assert body["roles"] == ["auditor"] and body["auth"] == "token"
    assert body["scopes"] == ["apps:read"]


async def test_the_directory_router_is_mounted_and_checks_its_callers(api: Api, iam: Iam) -> None:
    user = await iam.create_user(None, "ann@example.com", "Ann")
    pat, _ = await iam.issue_token(None, user.id, "laptop")
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    users = await api.http.get("/api/v1/users", headers=admin)
    assert users.status_code == 200
    assert [u["email"] for u in users.json()] == ["ann@example.com"]

    refused = await api.http.get("/api/v1/users", headers={"Authorization": f"Bearer {pat}"})
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    # The router's own refusal is audited like the guard's.
    entries = (
        await api.http.get("/api/v1/audit", params={"action": "access.deny"}, headers=admin)
    ).json()["entries"]
    assert [(e["actor"]["id"], e["target"]) for e in entries] == [
        (user.id, "api:GET /api/v1/users")
    ]
    anonymous = await api.http.get("/api/v1/users")
    assert anonymous.status_code == 401
    assert "/api/v1/users" in (await api.http.get("/api/v1/openapi.json")).json()["paths"]
