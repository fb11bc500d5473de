"""The directory's part of the control-plane REST API (``/api/v1``) and its error documents.

The caller is ``request.state.principal`` (set by the node's authentication middleware).
Platform admins may do everything; a user may manage their own password, second factor,
sessions and tokens; auditors may read users, groups and roles (least privilege, OWASP ASVS
V4.1). Domain errors become RFC 9457 problem documents in :func:`problem_for` only.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired

from fastapi import APIRouter, Request, Response

# pydantic (hence FastAPI) needs typing_extensions' TypedDict before Python 3.12.
from typing_extensions import TypedDict

from courtyard.core import Problem, problem
from courtyard.iam._errors import (
    AdminExists,
    DuplicateGroup,
    DuplicateServiceAccount,
    DuplicateUser,
    GroupNotFound,
    IamError,
    InvalidEmail,
    InvalidInput,
    InvalidName,
    InvalidRole,
    InvalidSubject,
    NotAuthenticated,
    PermissionDenied,
    ServiceAccountNotFound,
    SessionNotFound,
    TokenNotFound,
    TotpError,
    UserDisabled,
    UserNotFound,
    WeakPassword,
)
from courtyard.iam._models import (
    Group,
    Principal,
    RoleBinding,
    ServiceAccount,
    SessionInfo,
    TokenInfo,
    User,
    UserStatus,
)
from courtyard.iam._oidc_errors import ClientInvalid, ClientNotFound, OAuthError
from courtyard.iam._oidc_routes import clients_router, oidc_router
from courtyard.iam._service import Iam

__all__ = ["clients_router", "directory_router", "oidc_router", "problem_for"]


class UserDocument(TypedDict):
    id: str
    email: str
    name: str
    status: str
    createdAt: float
    hasPassword: bool
    totpEnabled: bool


class MeDocument(TypedDict):
    kind: str
    id: str
    email: str
    name: str
    groups: list[str]
    roles: list[str]
    appRoles: dict[str, list[str]]
    auth: str
    sessionId: str | None
    scopes: list[str]


class GroupDocument(TypedDict):
    name: str
    title: str
    members: list[str]


class RoleDocument(TypedDict):
    role: str
    subject: str
    app: str | None


class SessionDocument(TypedDict):
    id: str
    userId: str
    createdAt: float
    lastSeen: float
    expiresAt: float
    idleExpiresAt: float
    client: str
    userAgent: str
    methods: list[str]


class TokenDocument(TypedDict):
    id: str
    owner: str
    name: str
    scopes: list[str]
    createdAt: float
    expiresAt: float | None
    lastUsedAt: float | None
    revokedAt: float | None
    token: NotRequired[str]  # only in the answer that issues it


class ServiceAccountDocument(TypedDict):
    name: str
    title: str
    createdAt: float


class CreateUserBody(TypedDict):
    email: str
    name: NotRequired[str]
    password: NotRequired[str]
    roles: NotRequired[list[str]]


class UpdateUserBody(TypedDict):
    name: NotRequired[str]
    status: NotRequired[Literal["active", "disabled"]]


class PasswordBody(TypedDict):
    password: str


class CodeBody(TypedDict):
    code: str


class TokenBody(TypedDict):
    name: str
    scopes: NotRequired[list[str]]
    expiresIn: NotRequired[float | None]  # seconds; null = never


class GroupBody(TypedDict):
    name: str
    title: NotRequired[str]


class RoleBody(TypedDict):
    role: str
    subject: str
    app: NotRequired[str | None]


class ServiceAccountBody(TypedDict):
    name: str
    title: NotRequired[str]


class TotpBeginDocument(TypedDict):
    secret: str
    uri: str


class RecoveryCodesDocument(TypedDict):
    recoveryCodes: list[str]


_DEFAULT_TOKEN_LIFE = 90 * 86400.0


def user_document(user: User) -> UserDocument:
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "status": user.status,
        "createdAt": user.created_at,
        "hasPassword": user.has_password,
        "totpEnabled": user.totp_enabled,
    }


def group_document(group: Group) -> GroupDocument:
    return {"name": group.name, "title": group.title, "members": list(group.members)}


def role_document(binding: RoleBinding) -> RoleDocument:
    return {"role": binding.role, "subject": binding.subject, "app": binding.app}


def session_document(session: SessionInfo) -> SessionDocument:
    return {
        "id": session.id,
        "userId": session.user_id,
        "createdAt": session.created_at,
        "lastSeen": session.last_seen,
        "expiresAt": session.expires_at,
        "idleExpiresAt": session.idle_expires_at,
        "client": session.client,
        "userAgent": session.user_agent,
        "methods": list(session.methods),
    }


def token_document(token: TokenInfo) -> TokenDocument:
    return {
        "id": token.id,
        "owner": token.owner,
        "name": token.name,
        "scopes": list(token.scopes),
        "createdAt": token.created_at,
        "expiresAt": token.expires_at,
        "lastUsedAt": token.last_used_at,
        "revokedAt": token.revoked_at,
    }


def service_document(account: ServiceAccount) -> ServiceAccountDocument:
    return {"name": account.name, "title": account.title, "createdAt": account.created_at}


def caller_of(request: Request) -> Principal:
    """The authenticated caller; raises NotAuthenticated."""
    principal = getattr(request.state, "principal", None)
    if not isinstance(principal, Principal):
        raise NotAuthenticated()
    return principal


def _require_admin(caller: Principal, action: str) -> None:
    if not caller.is_admin:
        raise PermissionDenied(action)


def _require_reader(caller: Principal, action: str) -> None:
    if not (caller.is_admin or caller.is_auditor):
        raise PermissionDenied(action)


async def _require_self_or_admin(iam: Iam, caller: Principal, ref: str, action: str) -> str:
    """The user id ``ref`` names, if the caller is that user or an admin."""
    if ref == "me" and caller.kind == "user":
        ref = caller.id
    if caller.is_admin:
        return (await iam.get_user(ref)).id
    if caller.kind == "user" and ref in ("me", caller.id, caller.email):
        return caller.id
    raise PermissionDenied(action)


def directory_router(iam: Iam) -> APIRouter:
    """Routes for users, groups, roles, sessions, tokens and service accounts."""
    api = APIRouter(prefix="/api/v1", tags=["iam"])

    @api.get("/me", summary="Who am I")
    async def me(request: Request) -> MeDocument:
        caller = caller_of(request)
        return {
            "kind": caller.kind,
            "id": caller.id,
            "email": caller.email,
            "name": caller.name,
            "groups": list(caller.groups),
            "roles": list(caller.roles),
            "appRoles": caller.app_roles_lists(),
            "auth": caller.auth,
            "sessionId": caller.session_id,
            "scopes": list(caller.scopes),
        }

    # users
    @api.post("/users", status_code=201, summary="Create a user")
    async def create_user(request: Request, body: CreateUserBody) -> UserDocument:
        caller = caller_of(request)
        _require_admin(caller, "create users")
        user = await iam.create_user(
            caller,
            body["email"],
            body.get("name", ""),
            body.get("password"),
            roles=body.get("roles", ()),
        )
        return user_document(user)

    @api.get("/users", summary="List users")
    async def list_users(request: Request) -> list[UserDocument]:
        _require_reader(caller_of(request), "list users")
        return [user_document(u) for u in await iam.list_users()]

    @api.get("/users/{ref}", summary="Show a user")
    async def get_user(request: Request, ref: str) -> UserDocument:
        caller = caller_of(request)
        if ref == "me" or not (caller.is_admin or caller.is_auditor):
            ref = await _require_self_or_admin(iam, caller, ref, "read other users")
        return user_document(await iam.get_user(ref))

    @api.patch("/users/{ref}", summary="Rename, disable or enable a user")
    async def update_user(request: Request, ref: str, body: UpdateUserBody) -> UserDocument:
        caller = caller_of(request)
        _require_admin(caller, "change users")
        status: UserStatus | None = body.get("status")
        user = await iam.update_user(caller, ref, name=body.get("name"), status=status)
        return user_document(user)

    @api.delete("/users/{ref}", status_code=204, summary="Delete a user")
    async def delete_user(request: Request, ref: str) -> Response:
        caller = caller_of(request)
        _require_admin(caller, "delete users")
        await iam.delete_user(caller, ref)
        return Response(status_code=204)

    @api.put("/users/{ref}/password", status_code=204, summary="Set a user's password")
    async def set_password(request: Request, ref: str, body: PasswordBody) -> Response:
        caller = caller_of(request)
        user_id = await _require_self_or_admin(iam, caller, ref, "change others' passwords")
        await iam.set_password(caller, user_id, body["password"])
        return Response(status_code=204)

    @api.post("/users/{ref}/totp", summary="Start TOTP enrolment")
    async def begin_totp(request: Request, ref: str) -> TotpBeginDocument:
        caller = caller_of(request)
        user_id = await _require_self_or_admin(iam, caller, ref, "enrol others")
        secret, uri = await iam.begin_totp(user_id)
        return {"secret": secret, "uri": uri}

    @api.post("/users/{ref}/totp/confirm", summary="Confirm TOTP enrolment")
    async def confirm_totp(request: Request, ref: str, body: CodeBody) -> RecoveryCodesDocument:
        caller = caller_of(request)
        user_id = await _require_self_or_admin(iam, caller, ref, "enrol others")
        return {"recoveryCodes": await iam.confirm_totp(user_id, body["code"])}

    @api.delete("/users/{ref}/totp", status_code=204, summary="Turn TOTP off")
    async def disable_totp(request: Request, ref: str) -> Response:
        caller = caller_of(request)
        user_id = await _require_self_or_admin(iam, caller, ref, "change others' MFA")
        await iam.disable_totp(caller, user_id)
        return Response(status_code=204)

    # sessions
    @api.get("/users/{ref}/sessions", summary="List a user's sessions")
    async def list_sessions(request: Request, ref: str) -> list[SessionDocument]:
        caller = caller_of(request)
        user_id = await _require_self_or_admin(iam, caller, ref, "see others' sessions")
        return [session_document(s) for s in await iam.list_sessions(user_id)]

    @api.delete("/sessions/{session_id}", status_code=204, summary="End a session")
    async def revoke_session(request: Request, session_id: str) -> Response:
        caller = caller_of(request)
        session = await iam.get_session(session_id)
        if not caller.is_admin and session.user_id != caller.id:
            raise SessionNotFound(session_id)  # others' sessions are not even confirmed
        await iam.revoke_session(caller, session_id)
        return Response(status_code=204)

    # tokens
    @api.get("/users/{ref}/tokens", summary="List a user's tokens")
    async def list_tokens(request: Request, ref: str) -> list[TokenDocument]:
        caller = caller_of(request)
        user_id = await _require_self_or_admin(iam, caller, ref, "see others' tokens")
        return [token_document(t) for t in await iam.list_tokens(user_id)]

    @api.post("/users/{ref}/tokens", status_code=201, summary="Issue a personal access token")
    async def issue_user_token(request: Request, ref: str, body: TokenBody) -> TokenDocument:
        caller = caller_of(request)
        user_id = await _require_self_or_admin(iam, caller, ref, "issue tokens for others")
        return await _issue(caller, user_id, body)

    @api.delete("/tokens/{token_id}", status_code=204, summary="Revoke a token")
    async def revoke_token(request: Request, token_id: str) -> Response:
        caller = caller_of(request)
        token = await iam.get_token(token_id)
        if not caller.is_admin and token.owner != caller.subject:
            raise TokenNotFound(token_id)
        await iam.revoke_token(caller, token_id)
        return Response(status_code=204)

    async def _issue(caller: Principal, owner: str, body: TokenBody) -> TokenDocument:
        expires_in = body.get("expiresIn", _DEFAULT_TOKEN_LIFE)
        token, info = await iam.issue_token(
            caller, owner, body["name"], scopes=body.get("scopes", ()), expires_in=expires_in
        )
        return {**token_document(info), "token": token}

    # groups
    @api.post("/groups", status_code=201, summary="Create a group")
    async def create_group(request: Request, body: GroupBody) -> GroupDocument:
        caller = caller_of(request)
        _require_admin(caller, "create groups")
        return group_document(await iam.create_group(caller, body["name"], body.get("title", "")))

    @api.get("/groups", summary="List groups")
    async def list_groups(request: Request) -> list[GroupDocument]:
        _require_reader(caller_of(request), "list groups")
        return [group_document(g) for g in await iam.list_groups()]

    @api.get("/groups/{name}", summary="One group and its members")
    async def get_group(request: Request, name: str) -> GroupDocument:
        _require_reader(caller_of(request), "read groups")
        return group_document(await iam.get_group(name))

    @api.delete("/groups/{name}", status_code=204, summary="Delete a group")
    async def delete_group(request: Request, name: str) -> Response:
        caller = caller_of(request)
        _require_admin(caller, "delete groups")
        await iam.delete_group(caller, name)
        return Response(status_code=204)

    @api.put("/groups/{name}/members/{user}", summary="Add a member")
    async def add_member(request: Request, name: str, user: str) -> GroupDocument:
        caller = caller_of(request)
        _require_admin(caller, "change groups")
        return group_document(await iam.add_member(caller, name, user))

    @api.delete("/groups/{name}/members/{user}", summary="Remove a member")
    async def remove_member(request: Request, name: str, user: str) -> GroupDocument:
        caller = caller_of(request)
        _require_admin(caller, "change groups")
        return group_document(await iam.remove_member(caller, name, user))

    # roles
    @api.get("/roles", summary="List role bindings")
    async def list_roles(
        request: Request, subject: str | None = None, app: str | None = None
    ) -> list[RoleDocument]:
        _require_reader(caller_of(request), "list roles")
        return [role_document(b) for b in await iam.list_bindings(subject=subject, app=app)]

    @api.post("/roles", status_code=201, summary="Grant a role")
    async def grant(request: Request, body: RoleBody) -> RoleDocument:
        caller = caller_of(request)
        _require_admin(caller, "grant roles")
        binding = await iam.grant(caller, body["role"], body["subject"], body.get("app"))
        return role_document(binding)

    @api.delete("/roles", status_code=204, summary="Revoke a role")
    async def revoke_role(
        request: Request, role: str, subject: str, app: str | None = None
    ) -> Response:
        caller = caller_of(request)
        _require_admin(caller, "revoke roles")
        await iam.revoke_role(caller, role, subject, app)
        return Response(status_code=204)

    # service accounts
    @api.post("/service-accounts", status_code=201, summary="Create a service account")
    async def create_service(request: Request, body: ServiceAccountBody) -> ServiceAccountDocument:
        caller = caller_of(request)
        _require_admin(caller, "create service accounts")
        await iam.create_service_account(caller, body["name"], body.get("title", ""))
        [account] = [a for a in await iam.list_service_accounts() if a.name == body["name"]]
        return service_document(account)

    @api.get("/service-accounts", summary="List service accounts")
    async def list_services(request: Request) -> list[ServiceAccountDocument]:
        _require_reader(caller_of(request), "list service accounts")
        return [service_document(a) for a in await iam.list_service_accounts()]

    @api.delete("/service-accounts/{name}", status_code=204, summary="Delete a service account")
    async def delete_service(request: Request, name: str) -> Response:
        caller = caller_of(request)
        _require_admin(caller, "delete service accounts")
        await iam.delete_service_account(caller, name)
        return Response(status_code=204)

    @api.get("/service-accounts/{name}/tokens", summary="List a service account's API keys")
    async def list_service_tokens(request: Request, name: str) -> list[TokenDocument]:
        caller = caller_of(request)
        _require_admin(caller, "see API keys")
        return [token_document(t) for t in await iam.list_tokens(f"svc:{name}")]

    @api.post("/service-accounts/{name}/tokens", status_code=201, summary="Issue an API key")
    async def issue_service_token(request: Request, name: str, body: TokenBody) -> TokenDocument:
        caller = caller_of(request)
        _require_admin(caller, "issue API keys")
        return await _issue(caller, f"svc:{name}", body)

    return api


def problem_for(error: IamError) -> tuple[int, Problem]:
    """The HTTP status and RFC 9457 problem document for an IAM error."""
    detail = str(error)
    status, title, extra = _classify(error)
    return status, problem(status, title, detail, **extra)


def _classify(error: IamError) -> tuple[int, str, dict[str, Any]]:
    match error:
        case NotAuthenticated():
            return 401, "Not authenticated", {}
        case PermissionDenied():
            return 403, "Forbidden", {}
        case UserNotFound():
            return 404, "User not found", {"user": error.ref}
        case UserDisabled():
            return 409, "User disabled", {"user": error.ref}
        case GroupNotFound():
            return 404, "Group not found", {"group": error.name}
        case ServiceAccountNotFound():
            return 404, "Service account not found", {"serviceAccount": error.name}
        case TokenNotFound():
            return 404, "Token not found", {"token": error.token_id}
        case SessionNotFound():
            return 404, "Session not found", {"session": error.session_id}
        case DuplicateUser():
            return 409, "User exists", {"email": error.email}
        case DuplicateGroup():
            return 409, "Group exists", {"group": error.name}
        case DuplicateServiceAccount():
            return 409, "Service account exists", {"serviceAccount": error.name}
        case AdminExists():
            return 409, "Admin exists", {}
        case WeakPassword():
            return 422, "Weak password", {"reason": error.reason}
        case TotpError():
            return 422, "TOTP refused", {"reason": error.reason}
        case InvalidRole():
            return 422, "Invalid role", {"role": error.role}
        case InvalidSubject():
            return 422, "Invalid subject", {"subject": error.subject}
        case InvalidName() | InvalidEmail():
            return 422, "Invalid name", {}
        case InvalidInput():
            return 422, "Invalid input", {"field": error.field}
        case ClientNotFound():
            return 404, "Client not found", {"clientId": error.client_id}
        case ClientInvalid():
            return 422, "Invalid client", {"field": error.field}
        case OAuthError():
            return 400, "OAuth error", {"error": error.error}
        case _:
            return 500, "Identity error", {}
