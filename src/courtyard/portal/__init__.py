"""The portal: server-rendered pages where people sign in, open the apps they may use and
manage their account (sessions, API tokens, two-step verification). No JavaScript.

An edge: it calls :class:`courtyard.iam.Iam` and is handed the app list by the node.

Error tree: none of its own; it answers every failure with a page.
"""

from courtyard.portal._launcher import visible_apps
from courtyard.portal._models import LauncherApp, PortalConfig
from courtyard.portal._router import portal_router

__all__ = ["LauncherApp", "PortalConfig", "portal_router", "visible_apps"]
