"""Which apps a person sees in the launcher: exactly those the gateway would let them open.

Pure: the same ``admitting_rule`` the gateway applies decides, so the two cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from courtyard.contracts import admitting_rule
from courtyard.iam import Principal
from courtyard.portal._models import LauncherApp


def visible_apps(apps: Iterable[LauncherApp], principal: Principal) -> list[LauncherApp]:
    """The apps ``principal`` may open (public ones included), sorted by title."""
    shown = [
        app
        for app in apps
        if app.access["public"]
        or admitting_rule(app.access, principal.claims(app.name)) is not None
    ]
    return sorted(shown, key=lambda app: (app.title.casefold(), app.name))


def is_safe_link(url: str) -> bool:
    """A launcher link is a same-site path or an http(s) URL, never ``javascript:`` or ``data:``."""
    if url.startswith("/") and not url.startswith(("//", "/\\")):
        return True
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)
