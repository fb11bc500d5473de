"""Sign-in and sign-out pages: ``/login`` (password, then TOTP or a recovery code) and
``/logout``.

OWASP Authentication Cheat Sheet: one generic message whatever was wrong, throttling with
Retry-After. OWASP CSRF Cheat Sheet ("login CSRF"): even the sign-in form carries a signed
double-submit token. Every ``next`` goes through :func:`courtyard.contracts.safe_next`.
"""

from __future__ import annotations

import math

from fastapi import APIRouter, Request, Response

from courtyard.contracts import safe_next
from courtyard.iam import LoginOutcome
from courtyard.portal._context import LOGIN_CSRF_COOKIE, PortalContext, see_other, to_login
from courtyard.portal._pages import page_error as _error

BAD_CREDENTIALS = "Incorrect email or password."
BAD_CODE = "That code did not work. Try again, or start over."
FORM_EXPIRED = "Your sign-in form expired; please try again."


def throttled_message(seconds: int) -> str:
    """What a throttled person reads (the same for a wrong account or a wrong password)."""
    unit = "second" if seconds == 1 else "seconds"
    return f"Too many attempts. Try again in {seconds} {unit}."


def add_signin_routes(router: APIRouter, portal: PortalContext) -> None:
    """``GET``/``POST /login``, ``POST /login/totp``, ``GET``/``POST /logout``."""
    pages = portal.pages

    def login_token(request: Request) -> str:
        # Reuse a still-valid token so two open sign-in tabs do not invalidate each other.
        current = request.cookies.get(LOGIN_CSRF_COOKIE)
        if current and portal.csrf.is_valid_login_token(current):
            return current
        return portal.csrf.new_login_token()

    def signin_page(
        request: Request,
        template: str,
        title: str,
        next_path: str,
        errors: list[dict[str, str]] | None,
        status: int,
        headers: dict[str, str] | None,
        **fields: str,
    ) -> Response:
        """A sign-in step's page with a fresh login CSRF token in its form and cookie."""
        token = login_token(request)
        response = pages.render(
            template,
            status,
            headers,
            title=title,
            csrf=token,
            next=next_path,
            errors=errors or [],
            **fields,
        )
        portal.set_login_csrf(response, token)
        return response

    def login_page(
        request: Request,
        next_path: str,
        *,
        email: str = "",
        errors: list[dict[str, str]] | None = None,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> Response:
        return signin_page(
            request, "login.html", "Sign in", next_path, errors, status, headers, email=email
        )

    def totp_page(
        request: Request,
        next_path: str,
        pending: str,
        *,
        errors: list[dict[str, str]] | None = None,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> Response:
        return signin_page(
            request,
            "login_totp.html",
            "Two-step verification",
            next_path,
            errors,
            status,
            headers,
            pending=pending,
        )

    def expired(request: Request, next_path: str) -> Response:
        return login_page(request, next_path, errors=[_error(FORM_EXPIRED)], status=400)

    def signed_in(outcome: LoginOutcome, next_path: str) -> Response:
        response = see_other(next_path)
        assert outcome.cookie is not None  # status "ok" always carries the cookie
        portal.set_session(response, outcome.cookie)
        portal.clear_login_csrf(response)
        return response

    def throttled(outcome: LoginOutcome) -> tuple[list[dict[str, str]], dict[str, str]]:
        seconds = max(1, math.ceil(outcome.retry_after))
        return [_error(throttled_message(seconds))], {"Retry-After": str(seconds)}

    @router.get("/login", include_in_schema=False)
    async def login_form(request: Request, next: str | None = None) -> Response:
        next_path = safe_next(next)
        if await portal.principal(request) is not None:
            return see_other(next_path)
        return login_page(request, next_path)

    @router.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        fields = await portal.form(request)
        next_path = safe_next(fields.get("next"))
        if not portal.csrf.check_login(request.cookies.get(LOGIN_CSRF_COOKIE), fields.get("csrf")):
            return expired(request, next_path)
        email = fields.get("email", "").strip()
        outcome = await portal.iam.login(
            email,
            fields.get("password", ""),
            client=portal.client(request),
            user_agent=portal.user_agent(request),
        )
        if outcome.status == "ok":
            return signed_in(outcome, next_path)
        if outcome.status == "totp_required" and outcome.pending is not None:
            return totp_page(request, next_path, outcome.pending)
        if outcome.status == "throttled":
            errors, headers = throttled(outcome)
            return login_page(
                request, next_path, email=email, errors=errors, status=429, headers=headers
            )
        errors = [_error(BAD_CREDENTIALS, "email")]
        return login_page(request, next_path, email=email, errors=errors, status=401)

    @router.get("/login/totp", include_in_schema=False)
    async def login_totp_reloaded(next: str | None = None) -> Response:
        # The second step only exists as the answer to a password POST; start again.
        return to_login(safe_next(next))

    @router.post("/login/totp", include_in_schema=False)
    async def login_totp(request: Request) -> Response:
        fields = await portal.form(request)
        next_path = safe_next(fields.get("next"))
        if not portal.csrf.check_login(request.cookies.get(LOGIN_CSRF_COOKIE), fields.get("csrf")):
            return expired(request, next_path)
        pending = fields.get("pending", "")
        if not pending:
            return to_login(next_path)
        outcome = await portal.iam.login_totp(
            pending,
            fields.get("code", "")[:64],
            client=portal.client(request),
            user_agent=portal.user_agent(request),
        )
        if outcome.status == "ok":
            return signed_in(outcome, next_path)
        if outcome.status == "throttled":
            errors, headers = throttled(outcome)
            return totp_page(
                request, next_path, pending, errors=errors, status=429, headers=headers
            )
        errors = [_error(BAD_CODE, "code")]
        return totp_page(request, next_path, pending, errors=errors, status=401)

    @router.get("/logout", include_in_schema=False)
    async def logout_form(request: Request) -> Response:
        principal = await portal.principal(request)
        if principal is None or principal.session_id is None:
            return see_other("/login")
        return pages.render(
            "logout.html",
            title="Sign out",
            user=principal,
            csrf=portal.csrf.for_session(principal.session_id),
        )

    @router.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        fields = await portal.form(request)
        principal = await portal.principal(request)
        if principal is not None:
            if not portal.csrf.check_session(principal.session_id, fields.get("csrf")):
                return pages.render(
                    "logout.html",
                    400,
                    title="Sign out",
                    user=principal,
                    csrf=portal.csrf.for_session(principal.session_id or ""),
                    errors=[_error("Your form expired; please try again.")],
                )
            await portal.iam.logout(portal.session_cookie(request))
        response = see_other("/login")
        portal.clear_session(response)
        return response
