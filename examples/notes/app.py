"""Notes: a demo app on the standard library alone (WSGI on ``wsgiref``), run by Courtyard.

Notes live in memory. The platform's own tests redeploy this app with a changed ``VERSION``
to prove that a new revision serves, so keep that constant a plain string on one line.
Every request but ``/healthz`` must carry the platform's ``Courtyard-Identity`` assertion,
checked by the SDK's WSGI middleware; the page greets the caller by name.
"""

from __future__ import annotations

import html
import io
import itertools
import json
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from socketserver import ThreadingMixIn
from typing import IO, Any, cast
from urllib.parse import parse_qs
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

from courtyard.sdk import (
    Identity,
    IdentityError,
    IdentityVerifier,
    IdentityWSGIMiddleware,
    TracingWSGI,
    exporter_from_env,
    from_environment,
)

VERSION = "1.0.0"
APP_NAME = "notes"
MAX_NOTE = 500
MAX_BODY = 64 * 1024
# A prefix is echoed into HTML and Location headers, so accept only plain path characters.
SAFE_PREFIX = re.compile(r"(/[A-Za-z0-9._~-]+)+")

StartResponse = Callable[..., Any]
Environ = dict[str, Any]


class NoteBook:
    """The in-memory notes of one process; the server runs one thread per connection."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._notes: list[dict[str, Any]] = []

    def add(self, text: str) -> dict[str, Any]:
        with self._lock:
            note = {
                "id": next(self._ids),
                "text": text,
                "createdAt": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            self._notes.append(note)
            return note

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._notes)


def respond(
    start_response: StartResponse,
    status: str,
    body: bytes,
    content_type: str,
    extra: Iterable[tuple[str, str]] = (),
) -> list[bytes]:
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body))), *extra]
    start_response(status, headers)
    return [body]


def respond_json(start_response: StartResponse, status: str, data: Any) -> list[bytes]:
    return respond(start_response, status, json.dumps(data).encode(), "application/json")


def respond_problem(
    start_response: StartResponse,
    status: str,
    detail: str,
    extra: Iterable[tuple[str, str]] = (),
) -> list[bytes]:
    """A problem document (RFC 9457)."""
    code, title = status.split(" ", 1)
    body = {"type": "about:blank", "title": title, "status": int(code), "detail": detail}
    return respond(
        start_response, status, json.dumps(body).encode(), "application/problem+json", extra
    )


def forwarded_prefix(environ: Environ) -> str:
    """The path the gateway stripped, or "" when called directly or given something odd."""
    prefix = environ.get("HTTP_X_FORWARDED_PREFIX", "").rstrip("/")
    return prefix if SAFE_PREFIX.fullmatch(prefix) else ""


def read_note_text(environ: Environ) -> tuple[str | None, str, str]:
    """Parse a form or JSON body; return (text, error status, error detail)."""
    content_type = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
    body = environ["wsgi.input"].read()
    if content_type == "application/x-www-form-urlencoded":
        values = parse_qs(body.decode("utf-8", "replace")).get("text", [])
        text: Any = values[0] if values else None
    elif content_type == "application/json":
        try:
            payload = json.loads(body)
        except ValueError:
            return None, "400 Bad Request", "the body is not valid JSON"
        text = payload.get("text") if isinstance(payload, dict) else None
    else:
        return None, "415 Unsupported Media Type", "send a form or application/json"
    if not isinstance(text, str) or not text.strip():
        return None, "422 Unprocessable Content", "field 'text': expected a non-empty string"
    if len(text) > MAX_NOTE:
        return None, "422 Unprocessable Content", f"field 'text': at most {MAX_NOTE} characters"
    return text.strip(), "", ""


def render_home(notes: list[dict[str, Any]], revision: str, identity: Identity) -> bytes:
    items = "".join(f"<li>{html.escape(n['text'])}</li>" for n in notes) or "<li>No notes</li>"
    # Relative URLs, so the page works under any prefix the gateway puts it behind.
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Notes</title></head>
<body>
<h1>Notes</h1>
<p class="greeting">Hello, {html.escape(identity.display_name)}</p>
<ul>{items}</ul>
<form method="post" action="notes"><input name="text" required maxlength="{MAX_NOTE}">
<button>Add note</button></form>
<p><a href="version">version {html.escape(VERSION)}</a> · revision {html.escape(revision)}</p>
</body></html>
"""
    return page.encode()


def create_app(
    revision: str, verifier: IdentityVerifier
) -> Callable[[Environ, StartResponse], Iterable[bytes]]:
    """Build the WSGI app; nothing here reads the environment or opens a socket."""
    book = NoteBook()

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "/")
        # Put there by IdentityWSGIMiddleware, which refuses requests without one.
        identity: Identity = environ.get("courtyard.identity")
        routes = {
            "/healthz": {"GET"},
            "/": {"GET"},
            "/me": {"GET"},
            "/notes": {"GET", "POST"},
            "/version": {"GET"},
        }
        if path not in routes:
            return respond_problem(start_response, "404 Not Found", f"no route for {path}")
        if method not in routes[path]:
            allow = ", ".join(sorted(routes[path]))
            detail = f"{method} is not allowed on {path}"
            return respond_problem(
                start_response, "405 Method Not Allowed", detail, [("Allow", allow)]
            )
        if path == "/healthz":
            return respond_json(start_response, "200 OK", {"status": "ok"})
        if path == "/version":
            data = {"app": APP_NAME, "version": VERSION, "revision": revision}
            return respond_json(start_response, "200 OK", data)
        if path == "/me":
            data = {
                "greeting": f"Hello, {identity.display_name}",
                "sub": identity.sub,
                "email": identity.email,
                "name": identity.name,
                "groups": list(identity.groups),
                "roles": list(identity.roles),
                "act": identity.act,
            }
            return respond_json(start_response, "200 OK", data)
        if path == "/":
            page = render_home(book.all(), revision, identity)
            return respond(start_response, "200 OK", page, "text/html; charset=utf-8")
        if method == "GET":
            return respond_json(start_response, "200 OK", book.all())
        text, status, detail = read_note_text(environ)
        if text is None:
            return respond_problem(start_response, status, detail)
        note = book.add(text)
        if environ.get("CONTENT_TYPE", "").startswith("application/json"):
            return respond_json(start_response, "201 Created", note)
        # Post/redirect/get back to the list (RFC 9110 section 15.4.4).
        location = forwarded_prefix(environ) + "/"
        return respond(start_response, "303 See Other", b"", "text/plain", [("Location", location)])

    # /healthz stays open: the platform's health checks call it directly.
    return IdentityWSGIMiddleware(app, verifier, exempt_paths=["/healthz"])


class KeepAliveServerHandler(ServerHandler):
    http_version = "1.1"


class KeepAliveRequestHandler(WSGIRequestHandler):
    """wsgiref answers one request per connection; this one keeps HTTP/1.1 connections open.

    It reads each body up front, so an app that ignores a body cannot desync the connection.
    """

    protocol_version = "HTTP/1.1"
    timeout = 30  # seconds an idle keep-alive connection may hold its thread

    def handle(self) -> None:
        self.close_connection = True
        self.handle_one()
        while not self.close_connection:
            self.handle_one()

    def handle_one(self) -> None:
        self.close_connection = True
        try:
            self.raw_requestline = self.rfile.readline(65537)
        except (TimeoutError, ConnectionError):
            return
        if not self.raw_requestline:
            return
        if len(self.raw_requestline) > 65536:
            self.requestline, self.request_version, self.command = "", "", ""
            self.send_error(414)
            return
        if not self.parse_request():
            return
        if self.headers.get("Transfer-Encoding"):
            self.send_error(411, "send a Content-Length")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.send_error(400, "bad Content-Length")
            return
        if length > MAX_BODY:
            self.send_error(413)
            return
        body = io.BytesIO(self.rfile.read(length))
        handler = KeepAliveServerHandler(
            body,
            cast(IO[bytes], self.wfile),
            self.get_stderr(),
            self.get_environ(),
            multithread=True,
        )
        handler.request_handler = self  # type: ignore[attr-defined]  # wsgiref logs through it
        handler.run(self.server.get_app())  # type: ignore[attr-defined]

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Framing errors, sent before the app runs, are problem documents too; then close."""
        title, default_detail = self.responses.get(code, ("Error", ""))
        detail = message or explain or default_detail
        body = json.dumps({"type": "about:blank", "title": title, "status": code, "detail": detail})
        self.log_error("code %d, message %s", code, detail)
        self.send_response(code, title)
        self.send_header("Content-Type", "application/problem+json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body.encode())

    def log_message(self, format: str, *args: Any) -> None:
        # One line per request on stdout, as the platform collects it.
        print(f"{self.address_string()} - {format % args}", flush=True)


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # idle keep-alive connections must not hold up shutdown


def main() -> int:
    port = int(os.environ.get("PORT", "8000"))
    revision = os.environ.get("COURTYARD_REVISION", "dev")
    try:
        # COURTYARD_PLATFORM_URL (whose JWKS signs assertions) and COURTYARD_APP (our name).
        verifier = from_environment()
    except IdentityError as exc:
        print(f"notes: {exc}", file=sys.stderr)
        return 2
    server = ThreadingWSGIServer(("127.0.0.1", port), KeepAliveRequestHandler)
    # A span per request, continuing the caller's trace, sent to the platform's trace store.
    server.set_app(TracingWSGI(create_app(revision, verifier), exporter=exporter_from_env()))

    def handle_sigterm(signum: int, frame: object) -> None:
        # shutdown() waits for serve_forever(), which runs in this very thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, handle_sigterm)
    signal.signal(signal.SIGINT, handle_sigterm)
    print(f"notes {VERSION} listening on http://127.0.0.1:{port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    print("notes stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
