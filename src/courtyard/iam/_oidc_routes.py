"""The OpenID Connect provider's HTTP face: discovery and ``/oauth2/*`` (mounted at the root),
and the admin API for OAuth clients and signing keys (``/api/v1/clients``, ``/api/v1/keys``).

Protocol errors become RFC 6749 §5.2 JSON here; admin errors become RFC 9457 problems.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from courtyard.core import problem
from courtyard.iam._keyring import KeyInfo
from courtyard.iam._oidc import LogoutOutcome, OidcProvider
from courtyard.iam._oidc_errors import ClientInvalid, ClientNotFound, OAuthError
from courtyard.iam._oidc_grants import ErrorPage
from courtyard.iam._oidc_models import ClientInfo

__all__ = ["clients_router", "oidc_router"]

# RFC 6749 §5.1: token responses must not be cached.
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_FORM = "application/x-www-form-urlencoded"
_PROBLEM_JSON = "application/problem+json"
# Status of each OAuth error (RFC 6749 §5.2, RFC 6750 §3.1); anything else is 400.
_STATUS = {"invalid_client": 401, "invalid_token": 401, "insufficient_scope": 403}


class _BadRequest(Exception):
    def __init__(self, description: str) -> None:
        self.description = description


def oauth_error_response(error: OAuthError) -> JSONResponse:
    """RFC 6749 §5.2 error JSON; 401 + ``WWW-Authenticate`` where §5.2/RFC 6750 §3 say so."""
    status = _STATUS.get(error.error, 400)
    headers = dict(_NO_STORE)
    if error.error == "invalid_client" and error.basic:
        headers["WWW-Authenticate"] = 'Basic realm="courtyard"'
    elif error.error in ("invalid_token", "insufficient_scope"):
        headers["WWW-Authenticate"] = f'Bearer error="{error.error}"'
    body = {"error": error.error}
    if error.description:
        body["error_description"] = error.description
    return JSONResponse(body, status_code=status, headers=headers)


async def _params(request: Request, *, form_only: bool) -> dict[str, str]:
    """Request parameters; RFC 6749 §3.1/§3.2: each at most once, forms urlencoded."""
    if request.method == "GET" and not form_only:
        items = list(request.query_params.multi_items())
    else:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != _FORM:
            raise _BadRequest(f"the body must be {_FORM}")
        form = await request.form()
        items = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
    params: dict[str, str] = {}
    for key, value in items:
        if key in params:
            raise _BadRequest(f"parameter {key} is repeated")
        if value != "":  # RFC 6749 §3.1: empty parameters are treated as omitted
            params[key] = value
    return params


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    document = (
        "<!doctype html><html lang=en><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title><main><h1>{html.escape(title)}</h1>{body}</main>"
    )
    headers = {"Cache-Control": "no-store", "Content-Security-Policy": "default-src 'none'"}
    return HTMLResponse(document, status_code=status, headers=headers)


def _error_page(page: ErrorPage) -> HTMLResponse:
    return _page("Sign-in request refused", f"<p>{html.escape(page.message)}</p>", page.status)


def oidc_router(provider: OidcProvider) -> APIRouter:
    """Discovery, authorize, token, userinfo, jwks, revoke, introspect and logout."""
    router = APIRouter()
    config = provider.config

    @router.get("/.well-known/openid-configuration", include_in_schema=False)
    @router.get("/.well-known/oauth-authorization-server", include_in_schema=False)
    async def discovery() -> JSONResponse:
        return JSONResponse(provider.discovery(), headers={"Cache-Control": "max-age=300"})

    @router.get("/oauth2/jwks", include_in_schema=False)
    async def jwks() -> JSONResponse:
        # Verifiers may cache this long; a new key is published for at least as long before
        # it signs (the key ring's propagation delay).
        cache = f"public, max-age={config.jwks_max_age}"
        return JSONResponse(provider.jwks(), headers={"Cache-Control": cache})

    @router.api_route("/oauth2/authorize", methods=["GET", "POST"], include_in_schema=False)
    async def authorize(request: Request) -> Response:
        try:
            params = await _params(request, form_only=False)
        except _BadRequest as exc:
            return _error_page(ErrorPage(exc.description))
        cookie = request.cookies.get(config.session_cookie)
        outcome = await provider.authorize(params, cookie)
        if isinstance(outcome, ErrorPage):
            return _error_page(outcome)
        return RedirectResponse(outcome.url, status_code=302, headers={"Cache-Control": "no-store"})

    @router.post("/oauth2/token", include_in_schema=False)
    async def token(request: Request) -> Response:
        try:
            form = await _params(request, form_only=True)
            body = await provider.token(form, request.headers.get("authorization"))
        except _BadRequest as exc:
            return oauth_error_response(OAuthError("invalid_request", exc.description))
        except OAuthError as exc:
            return oauth_error_response(exc)
        return JSONResponse(body, headers=_NO_STORE)

    @router.api_route("/oauth2/userinfo", methods=["GET", "POST"], include_in_schema=False)
    async def userinfo(request: Request) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            # RFC 6750 §3.1: no credentials at all gets a bare challenge.
            return Response(status_code=401, headers={"WWW-Authenticate": "Bearer"})
        try:
            claims = await provider.userinfo(token.strip())
        except OAuthError as exc:
            return oauth_error_response(exc)
        return JSONResponse(claims, headers=_NO_STORE)

    @router.post("/oauth2/revoke", include_in_schema=False)
    async def revoke(request: Request) -> Response:
        try:
            form = await _params(request, form_only=True)
            await provider.revoke(form, request.headers.get("authorization"))
        except _BadRequest as exc:
            return oauth_error_response(OAuthError("invalid_request", exc.description))
        except OAuthError as exc:
            return oauth_error_response(exc)
        return Response(status_code=200, headers=_NO_STORE)  # RFC 7009 §2.2

    @router.post("/oauth2/introspect", include_in_schema=False)
    async def introspect(request: Request) -> Response:
        try:
            form = await _params(request, form_only=True)
            body = await provider.introspect(form, request.headers.get("authorization"))
        except _BadRequest as exc:
            return oauth_error_response(OAuthError("invalid_request", exc.description))
        except OAuthError as exc:
            return oauth_error_response(exc)
        return JSONResponse(body, headers=_NO_STORE)

    @router.api_route("/oauth2/logout", methods=["GET", "POST"], include_in_schema=False)
    async def logout(request: Request) -> Response:
        try:
            params = await _params(request, form_only=False)
        except _BadRequest as exc:
            return _page("Sign-out refused", f"<p>{html.escape(exc.description)}</p>", 400)
        confirmed = request.method == "POST" and params.pop("confirm", "") == "yes"
        cookie = request.cookies.get(config.session_cookie)
        outcome = await provider.end_session(params, cookie, confirmed=confirmed)
        return _logout_response(outcome, params, config.session_cookie)

    return router


def _logout_response(outcome: LogoutOutcome, params: Mapping[str, str], cookie: str) -> Response:
    response: Response
    if outcome.status == "error":
        return _page("Sign-out refused", f"<p>{html.escape(outcome.message)}</p>", 400)
    if outcome.status == "confirm":
        fields = "".join(
            f'<input type=hidden name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in params.items()
        )
        form = (
            '<form method=post action="/oauth2/logout">'
            f"{fields}<input type=hidden name=confirm value=yes>"
            "<p>Do you want to sign out of Courtyard?</p><button>Sign out</button></form>"
        )
        return _page("Sign out", form)
    if outcome.status == "redirect" and outcome.url is not None:
        response = RedirectResponse(outcome.url, status_code=302)
    else:
        response = _page("Signed out", "<p>You are signed out of Courtyard.</p>")
    if outcome.clear_cookie:
        response.delete_cookie(
            cookie, path="/", secure=cookie.startswith("__Host-"), httponly=True, samesite="lax"
        )
    return response


# -- admin API ---------------------------------------------------------------------------------


def _problem(status: int, title: str, detail: str | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse(
        dict(problem(status, title, detail, **extra)),
        status_code=status,
        media_type=_PROBLEM_JSON,
    )


def _admin(request: Request) -> JSONResponse | Any:
    """The admin calling, or the 401/403 problem to answer with."""
    principal = getattr(request.state, "principal", None)
    if principal is None:
        return _problem(401, "Unauthorized", "sign in or present an API token")
    if not getattr(principal, "is_admin", False):
        return _problem(403, "Forbidden", "only platform admins manage OAuth clients and keys")
    return principal


def client_document(client: ClientInfo) -> dict[str, Any]:
    """The JSON form of a client (camelCase members; the secret is never in it)."""
    return {
        "clientId": client.client_id,
        "app": client.app,
        "name": client.name,
        "public": client.public,
        "redirectUris": list(client.redirect_uris),
        "postLogoutRedirectUris": list(client.post_logout_redirect_uris),
        "grantTypes": list(client.grant_types),
        "scopes": list(client.scopes),
        "audience": list(client.audience),
        "idTokenAlg": client.id_token_alg,
        "createdAt": client.created_at,
    }


def key_document(key: KeyInfo) -> dict[str, Any]:
    """The JSON form of a key generation (public facts only)."""
    return {
        "id": key.id,
        "state": key.state,
        "kids": list(key.kids),
        "createdAt": key.created_at,
        "activatedAt": key.activated_at,
        "retiredAt": key.retired_at,
        "removeAt": key.remove_at,
    }


def _strings(body: Mapping[str, Any], name: str, default: list[str]) -> list[str]:
    value = body.get(name, default)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ClientInvalid(name, "expected a list of strings")
    return value


def clients_router(provider: OidcProvider) -> APIRouter:
    """``/api/v1/clients`` and ``/api/v1/keys``: platform admins only."""
    router = APIRouter(prefix="/api/v1")

    @router.post("/clients", status_code=201)
    async def create_client(request: Request) -> Response:
        caller = _admin(request)
        if isinstance(caller, JSONResponse):
            return caller
        try:
            body = await request.json()
        except ValueError:
            return _problem(400, "Bad Request", "the body must be a JSON object")
        if not isinstance(body, dict):
            return _problem(400, "Bad Request", "the body must be a JSON object")
        try:
            public = body.get("public", False)
            if not isinstance(public, bool):
                raise ClientInvalid("public", "expected true or false")
            for name in ("app", "name"):
                if not isinstance(body.get(name), str):
                    raise ClientInvalid(name, "expected a string")
            info, secret = await provider.register_client(
                caller,
                body["app"],
                name=body["name"],
                public=public,
                redirect_uris=_strings(body, "redirectUris", []),
                post_logout_redirect_uris=_strings(body, "postLogoutRedirectUris", []),
                grant_types=_strings(body, "grantTypes", ["authorization_code", "refresh_token"]),
                scopes=_strings(body, "scopes", ["openid", "profile", "email"]),
                audience=_strings(body, "audience", ["courtyard"]),
                id_token_alg=str(body.get("idTokenAlg", "ES256")),
            )
        except ClientInvalid as exc:
            return _problem(
                422,
                "Client Invalid",
                str(exc),
                errors=[{"source": "body", "field": exc.field, "message": exc.message}],
            )
        document = client_document(info)
        if secret is not None:
            document["clientSecret"] = secret  # shown this once, never again
        return JSONResponse(document, status_code=201, headers={"Cache-Control": "no-store"})

    @router.get("/clients")
    async def list_clients(request: Request) -> Response:
        caller = _admin(request)
        if isinstance(caller, JSONResponse):
            return caller
        clients = await provider.list_clients()
        return JSONResponse({"clients": [client_document(c) for c in clients]})

    @router.get("/clients/{client_id}")
    async def get_client(request: Request, client_id: str) -> Response:
        caller = _admin(request)
        if isinstance(caller, JSONResponse):
            return caller
        try:
            return JSONResponse(client_document(await provider.get_client(client_id)))
        except ClientNotFound as exc:
            return _problem(404, "Client Not Found", str(exc))

    @router.delete("/clients/{client_id}", status_code=204)
    async def delete_client(request: Request, client_id: str) -> Response:
        caller = _admin(request)
        if isinstance(caller, JSONResponse):
            return caller
        try:
            await provider.delete_client(caller, client_id)
        except ClientNotFound as exc:
            return _problem(404, "Client Not Found", str(exc))
        return Response(status_code=204)

    @router.post("/clients/{client_id}/secret")
    async def rotate_secret(request: Request, client_id: str) -> Response:
        caller = _admin(request)
        if isinstance(caller, JSONResponse):
            return caller
        try:
            info, secret = await provider.rotate_secret(caller, client_id)
        except ClientNotFound as exc:
            return _problem(404, "Client Not Found", str(exc))
        except OAuthError:
            return _problem(409, "Client Is Public", "a public client has no secret")
        document = {**client_document(info), "clientSecret": secret}
        return JSONResponse(document, headers={"Cache-Control": "no-store"})

    @router.get("/keys")
    async def list_keys(request: Request) -> Response:
        caller = _admin(request)
        if isinstance(caller, JSONResponse):
            return caller
        return JSONResponse({"keys": [key_document(k) for k in provider.list_keys()]})

    @router.post("/keys/rotate")
    async def rotate_keys(request: Request) -> Response:
        caller = _admin(request)
        if isinstance(caller, JSONResponse):
            return caller
        info = await provider.rotate_keys(caller)
        document = {
            **key_document(info),
            "propagationDelay": provider.config.propagation_delay,
        }
        return JSONResponse(document, status_code=201)

    return router
