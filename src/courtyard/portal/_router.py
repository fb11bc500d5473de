"""The portal's routes in one FastAPI router: the launcher at ``/``, sign-in, the account
pages and the stylesheet (DESIGN.md, "One port")."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from courtyard.core import Clock, SystemClock
from courtyard.iam import Iam
from courtyard.portal._account import add_account_routes
from courtyard.portal._context import AppsProvider, PortalContext, to_login
from courtyard.portal._csrf import CsrfTokens
from courtyard.portal._launcher import is_safe_link, visible_apps
from courtyard.portal._models import PortalConfig
from courtyard.portal._pages import CSS_PATH, Pages
from courtyard.portal._signin import add_signin_routes


def portal_router(
    iam: Iam, apps: AppsProvider, config: PortalConfig, *, clock: Clock | None = None
) -> APIRouter:
    """Every portal page. ``apps()`` lists the fleet's apps (the node reads the catalog)."""
    clock = clock if clock is not None else SystemClock()
    portal = PortalContext(
        iam=iam,
        apps=apps,
        config=config,
        csrf=CsrfTokens(config.csrf_secret, clock),
        pages=Pages(config.product_name),
        clock=clock,
    )
    router = APIRouter(tags=["portal"])

    @router.get("/", include_in_schema=False)
    async def launcher(request: Request) -> Response:
        principal = await portal.principal(request)
        if principal is None or principal.session_id is None:
            return to_login("/")
        shown = visible_apps(await apps(), principal)
        return portal.pages.render(
            "launcher.html",
            title="Your apps",
            user=principal,
            csrf=portal.csrf.for_session(principal.session_id),
            apps=[(app, app.url if is_safe_link(app.url) else None) for app in shown],
        )

    @router.get(CSS_PATH, include_in_schema=False)
    async def stylesheet() -> Response:
        return portal.pages.stylesheet()

    add_signin_routes(router, portal)
    add_account_routes(router, portal)
    return router
