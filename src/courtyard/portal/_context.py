"""What every portal route shares: the services it calls, the signed-in user of a request,
the session cookie's attributes and form reading."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.responses import RedirectResponse

from courtyard.core import Clock
from courtyard.iam import Iam, Principal
from courtyard.portal._csrf import LOGIN_TOKEN_TTL, CsrfTokens
from courtyard.portal._models import LauncherApp, PortalConfig
from courtyard.portal._pages import Pages

LOGIN_CSRF_COOKIE = "courtyard_csrf"
_MAX_FIELD = 4096  # longer than any field we expect (MAX_PASSWORD_LENGTH is 1024)

AppsProvider = Callable[[], Awaitable[list[LauncherApp]]]


def see_other(location: str) -> Response:
    """A 303 (RFC 9110 §15.4.4): after a POST the browser GETs ``location``."""
    return RedirectResponse(location, status_code=303, headers={"Cache-Control": "no-store"})


def to_login(next_path: str) -> Response:
    """Send a browser without a valid session to sign in, and back afterwards."""
    return see_other(f"/login?next={quote(next_path, safe='/')}")


@dataclass(frozen=True)
class PortalContext:
    """The portal's dependencies, built once by :func:`courtyard.portal.portal_router`."""

    iam: Iam
    apps: AppsProvider
    config: PortalConfig
    csrf: CsrfTokens
    pages: Pages
    clock: Clock

    async def principal(self, request: Request) -> Principal | None:
        """The person signed in with this request's session cookie, or None."""
        cookie = request.cookies.get(self.config.cookie_name)
        if not cookie:
            return None
        return await self.iam.authenticate_session(cookie)

    def session_cookie(self, request: Request) -> str:
        return request.cookies.get(self.config.cookie_name, "")

    @staticmethod
    def client(request: Request) -> str:
        """The caller's address: the first ``X-Forwarded-For`` hop (the gateway adds it), else
        the peer."""
        forwarded = request.headers.get("x-forwarded-for", "")
        first = forwarded.split(",")[0].strip()
        if first:
            return first[:64]
        return request.client.host if request.client is not None else "-"

    @staticmethod
    def user_agent(request: Request) -> str:
        return request.headers.get("user-agent", "")[:512]

    @staticmethod
    async def form(request: Request) -> dict[str, str]:
        """The posted fields: the first value of each, text only, capped in length."""
        fields: dict[str, str] = {}
        form = await request.form()
        for key, value in form.multi_items():
            if isinstance(value, str) and key not in fields:
                fields[key] = value[:_MAX_FIELD]
        return fields

    def set_session(self, response: Response, cookie: str) -> None:
        """The session cookie: HttpOnly, SameSite=Lax, Path=/, no Domain, Secure over TLS
        (OWASP Session Management Cheat Sheet; RFC 6265bis §4.1.3.2 for ``__Host-``)."""
        response.set_cookie(
            self.config.cookie_name,
            cookie,
            path="/",
            secure=self.config.cookie_secure,
            httponly=True,
            samesite="lax",
        )

    def clear_session(self, response: Response) -> None:
        """Delete the session cookie (Max-Age=0, the same attributes it was set with)."""
        response.delete_cookie(
            self.config.cookie_name,
            path="/",
            secure=self.config.cookie_secure,
            httponly=True,
            samesite="lax",
        )

    def set_login_csrf(self, response: Response, token: str) -> None:
        """The double-submit cookie of the sign-in forms (SameSite=Strict, HttpOnly)."""
        response.set_cookie(
            LOGIN_CSRF_COOKIE,
            token,
            max_age=int(LOGIN_TOKEN_TTL),
            path="/login",
            secure=self.config.cookie_secure,
            httponly=True,
            samesite="strict",
        )

    def clear_login_csrf(self, response: Response) -> None:
        response.delete_cookie(
            LOGIN_CSRF_COOKIE,
            path="/login",
            secure=self.config.cookie_secure,
            httponly=True,
            samesite="strict",
        )
