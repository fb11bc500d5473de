"""Server-rendered pages: Jinja2 templates with autoescaping on, and the headers every portal
answer carries (no caching of personal data, no framing, no script at all)."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources
from typing import Any

import jinja2
from fastapi.responses import HTMLResponse, Response

CSS_PATH = "/portal/static/portal.css"

# OWASP Session Management Cheat Sheet: pages with secrets or personal data must not be stored
# by any cache. The policy allows our stylesheet and nothing else: the portal runs no script.
# form-action is left out on purpose: browsers apply it to the redirect after sign-in, which
# may go on to an OAuth client's redirect_uri.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _when(timestamp: float | None) -> str:
    """A timestamp people read: ``2026-11-22 07:14 UTC`` (``never`` for None)."""
    if timestamp is None:
        return "never"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


def page_error(message: str, field: str = "") -> dict[str, str]:
    """One entry of a page's error summary; ``field`` is the id of the input it is about."""
    return {"message": message, "field": field}


class Pages:
    """Renders the portal's templates into complete HTML answers."""

    def __init__(self, product_name: str) -> None:
        self._product = product_name
        self._env = jinja2.Environment(
            loader=jinja2.PackageLoader("courtyard.portal", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._env.filters["when"] = _when
        self.css = resources.files("courtyard.portal").joinpath("static/portal.css").read_bytes()

    def render(
        self,
        template: str,
        status: int = 200,
        headers: dict[str, str] | None = None,
        **context: Any,
    ) -> HTMLResponse:
        """``template`` filled with ``context`` (plus the defaults every page expects)."""
        values: dict[str, Any] = {
            "product": self._product,
            "css_url": CSS_PATH,
            "user": None,
            "csrf": "",
            "errors": [],
            "notice": None,
        }
        values.update(context)
        body = self._env.get_template(template).render(values)
        return HTMLResponse(body, status_code=status, headers={**PAGE_HEADERS, **(headers or {})})

    def stylesheet(self) -> Response:
        """The one stylesheet; public and cacheable (it holds nothing personal)."""
        return Response(
            self.css,
            media_type="text/css",
            headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
        )
