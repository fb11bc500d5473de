"""What the portal's launcher lists: every routed app of the catalog with who may open it.

The portal filters this list per user with the same rule the gateway enforces
(contracts.admitting_rule), so the launcher never shows an app that would answer 403.
"""

from __future__ import annotations

from courtyard.catalog import Catalog
from courtyard.contracts import AccessPolicy
from courtyard.portal import LauncherApp


async def launcher_apps(catalog: Catalog) -> list[LauncherApp]:
    """Every app with a route, as the launcher shows it (stopped apps included: the gateway
    answers for them, and the stage tells users what to expect)."""
    apps: list[LauncherApp] = []
    for app in await catalog.list():
        routes = app.manifest.spec.routes
        if not routes:
            continue
        first = routes[0]
        url = first.path if first.host is None else f"//{first.host}{first.path}"
        access = app.manifest.spec.access
        apps.append(
            LauncherApp(
                name=app.name,
                title=app.title,
                owner=app.owner,
                stage=app.stage,
                url=url,
                access=AccessPolicy(public=access.public, allow=list(access.allow)),
            )
        )
    return apps
