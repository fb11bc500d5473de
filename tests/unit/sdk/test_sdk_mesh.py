"""MeshClient and AsyncMeshClient: what they put on the wire (through httpx.MockTransport and one
real loopback server), the credential file they reread, and the errors they raise."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from courtyard.sdk import (
    AsyncMeshClient,
    CredentialFile,
    Identity,
    MeshClient,
    MeshError,
    SdkError,
)
from courtyard.sdk.testing import IdentityMinter, ManualClock

MESH = "http://127.0.0.1:7001"


class Recorder:
    """An httpx transport handler that keeps every request and answers with ``answer``."""

    def __init__(self, answer: httpx.Response | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.answer = answer or httpx.Response(200, json={"ok": True})

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return self.answer

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


def _client(recorder: Recorder, credential: object = "tok-1", **options: object) -> MeshClient:
    return MeshClient(MESH, credential, transport=httpx.MockTransport(recorder), **options)  # type: ignore[arg-type]


def _problem(status: int, detail: str) -> httpx.Response:
    return httpx.Response(
        status,
        json={"type": "about:blank", "title": "Forbidden", "status": status, "detail": detail},
        headers={"Content-Type": "application/problem+json"},
    )


def test_a_call_goes_to_the_service_with_the_workload_credential() -> None:
    recorder = Recorder()
    with _client(recorder) as mesh:
        response = mesh.call("ledger", "/entries", "post", params={"dry": "1"}, json={"amount": 12})
    assert response.json() == {"ok": True}
    request = recorder.last
    assert request.method == "POST"
    assert str(request.url) == f"{MESH}/ledger/entries?dry=1"
    assert request.headers["authorization"] == "Bearer tok-1"
    assert json.loads(request.content) == {"amount": 12}
    assert "courtyard-deadline" not in request.headers
    assert "courtyard-on-behalf-of" not in request.headers


def test_a_path_without_a_slash_and_extra_headers_are_kept() -> None:
    recorder = Recorder()
    with _client(recorder) as mesh:
        mesh.call("ledger", "entries", headers={"X-Trace": "1"}, content=b"raw")
    assert recorder.last.url.path == "/ledger/entries"
    assert recorder.last.headers["x-trace"] == "1"
    assert recorder.last.content == b"raw"


def test_a_caller_cannot_override_the_credential_with_its_own_header() -> None:
    recorder = Recorder()
    with _client(recorder) as mesh:
        mesh.call("ledger", "/", headers={"authorization": "Bearer other"})
        assert recorder.last.headers.get_list("authorization") == ["Bearer tok-1"]
        mesh.call("ledger", "/", headers={"Courtyard-On-Behalf-Of": "forged"})
        assert "courtyard-on-behalf-of" not in recorder.last.headers


def test_an_invalid_service_name_is_refused_before_sending() -> None:
    recorder = Recorder()
    with _client(recorder) as mesh, pytest.raises(MeshError, match="not an app name"):
        mesh.call("../admin", "/")
    assert recorder.requests == []


def test_the_credential_file_is_reread_only_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "workload.jwt"
    path.write_text("tok-aaa\n")
    recorder = Recorder()
    with _client(recorder, path) as mesh:
        mesh.call("ledger", "/")
        assert recorder.last.headers["authorization"] == "Bearer tok-aaa"

        # Same size, same inode, same modification time: the cached token stays in use.
        stamp = path.stat()
        with path.open("r+") as handle:
            handle.write("tok-bbb\n")
        os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
        mesh.call("ledger", "/")
        assert recorder.last.headers["authorization"] == "Bearer tok-aaa"

        # The supervisor's rotation: a new file replaces the old one atomically.
        fresh = tmp_path / "workload.jwt.new"
        fresh.write_text("tok-rotated")
        fresh.replace(path)
        mesh.call("ledger", "/")
        assert recorder.last.headers["authorization"] == "Bearer tok-rotated"


def test_a_missing_or_empty_credential_file_is_a_readable_error(tmp_path: Path) -> None:
    recorder = Recorder()
    unreadable = r"cannot read the workload credential .*absent\.jwt"
    with (
        _client(recorder, tmp_path / "absent.jwt") as mesh,
        pytest.raises(MeshError, match=unreadable),
    ):
        mesh.call("ledger", "/")
    empty = tmp_path / "empty.jwt"
    empty.write_text("  \n")
    with pytest.raises(MeshError, match="holds no token"):
        CredentialFile(empty).token()
    assert recorder.requests == []


def test_a_timeout_sets_the_deadline_header_in_unix_milliseconds() -> None:
    clock = ManualClock(1_800_000_000.0)
    recorder = Recorder()
    with _client(recorder, clock=clock) as mesh:
        mesh.call("ledger", "/", timeout=2.5)
        assert recorder.last.headers["courtyard-deadline"] == "1800000002500"
        # A deadline the app received and passes on is never extended, only shortened.
        mesh.call("ledger", "/", timeout=10, headers={"Courtyard-Deadline": "1800000001000"})
        assert recorder.last.headers.get_list("courtyard-deadline") == ["1800000001000"]
        mesh.call("ledger", "/", timeout=1, headers={"courtyard-deadline": "1800000009000"})
        assert recorder.last.headers.get_list("courtyard-deadline") == ["1800000001000"]
        mesh.call("ledger", "/", headers={"Courtyard-Deadline": "1800000004000"})
        assert recorder.last.headers.get_list("courtyard-deadline") == ["1800000004000"]
        assert recorder.last.extensions["timeout"]["read"] == pytest.approx(4.5)


def test_on_behalf_of_passes_the_end_users_assertion(minter: IdentityMinter) -> None:
    token = minter.mint(sub="u_dana", name="Dana")
    identity = minter.verifier().verify(token)
    assert identity.token == token
    recorder = Recorder()
    with _client(recorder) as mesh:
        mesh.call("ledger", "/", on_behalf_of=identity)
        assert recorder.last.headers["courtyard-on-behalf-of"] == token
        mesh.call("ledger", "/", on_behalf_of="raw-assertion")
        assert recorder.last.headers["courtyard-on-behalf-of"] == "raw-assertion"
        with pytest.raises(MeshError, match="carries no assertion"):
            mesh.call("ledger", "/", on_behalf_of=Identity(sub="u_made_up"))
    assert len(recorder.requests) == 2


def test_an_error_answer_raises_with_the_problem_detail() -> None:
    recorder = Recorder(_problem(403, "expenses does not declare calls to ledger /admin"))
    with _client(recorder) as mesh, pytest.raises(MeshError) as caught:
        mesh.call("ledger", "/admin", "DELETE")
    error = caught.value
    assert isinstance(error, SdkError)
    assert error.status == 403
    assert error.detail == "expenses does not declare calls to ledger /admin"
    assert error.problem["status"] == 403
    assert error.response is not None and error.response.status_code == 403
    assert str(error) == (
        "DELETE ledger /admin answered 403 Forbidden: "
        "expenses does not declare calls to ledger /admin"
    )


def test_an_error_answer_without_a_problem_document_still_reads_well() -> None:
    recorder = Recorder(httpx.Response(502, text="bad gateway"))
    with _client(recorder) as mesh, pytest.raises(MeshError) as caught:
        mesh.call("ledger", "/")
    assert caught.value.status == 502
    assert caught.value.problem == {}
    assert str(caught.value) == "GET ledger / answered 502 Bad Gateway"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_no_mesh_listening_is_a_readable_error() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    with MeshClient(url, "tok") as mesh, pytest.raises(MeshError, match="no mesh answers at"):
        mesh.call("ledger", "/")


def test_publish_posts_the_data_and_returns_the_event_id() -> None:
    recorder = Recorder(httpx.Response(202, json={"id": "ev-1"}))
    with _client(recorder) as mesh:
        assert mesh.publish("invoice.paid", {"invoice": 7}) == "ev-1"
        request = recorder.last
        assert (request.method, str(request.url)) == ("POST", f"{MESH}/_events/invoice.paid")
        assert request.headers["authorization"] == "Bearer tok-1"
        assert json.loads(request.content) == {"invoice": 7}
        assert "ce-id" not in request.headers
        mesh.publish("invoice.paid", None, id="mine-1")
        assert recorder.last.headers["ce-id"] == "mine-1"


def test_a_refused_publish_raises() -> None:
    recorder = Recorder(_problem(403, "expenses does not declare topic x (publishes)"))
    with _client(recorder) as mesh, pytest.raises(MeshError, match=r"publishing to x .*403"):
        mesh.publish("x", {})
    with _client(Recorder(httpx.Response(202, json={}))) as mesh:
        with pytest.raises(MeshError, match="names no event id"):
            mesh.publish("x", {})
        with pytest.raises(MeshError, match="not a topic"):
            mesh.publish("a/b", {})


def test_from_environment_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(MeshError) as caught:
        MeshClient.from_environment({})
    assert "COURTYARD_MESH_URL and COURTYARD_WORKLOAD_CREDENTIAL not set" in str(caught.value)
    path = tmp_path / "workload.jwt"
    path.write_text("tok-env")
    recorder = Recorder()
    environ = {"COURTYARD_MESH_URL": MESH + "/", "COURTYARD_WORKLOAD_CREDENTIAL": str(path)}
    with MeshClient.from_environment(environ, transport=httpx.MockTransport(recorder)) as mesh:
        mesh.call("ledger", "/x")
    assert str(recorder.last.url) == f"{MESH}/ledger/x"
    assert recorder.last.headers["authorization"] == "Bearer tok-env"


async def test_the_async_client_calls_and_publishes(minter: IdentityMinter) -> None:
    recorder = Recorder()
    clock = ManualClock(1_800_000_000.0)
    token = minter.mint(sub="u_li")
    async with AsyncMeshClient(
        MESH, "tok-a", transport=httpx.MockTransport(recorder), clock=clock
    ) as mesh:
        await mesh.call("ledger", "/e", "PUT", json=[1], on_behalf_of=token, timeout=1)
        request = recorder.last
        assert (request.method, request.url.path) == ("PUT", "/ledger/e")
        assert request.headers["authorization"] == "Bearer tok-a"
        assert request.headers["courtyard-on-behalf-of"] == token
        assert request.headers["courtyard-deadline"] == "1800000001000"
        recorder.answer = httpx.Response(202, json={"id": "ev-9"})
        assert await mesh.publish("t", 1) == "ev-9"
        recorder.answer = _problem(403, "no")
        with pytest.raises(MeshError, match="answered 403"):
            await mesh.call("ledger", "/")


async def test_the_async_client_from_environment(tmp_path: Path) -> None:
    with pytest.raises(MeshError, match="COURTYARD_WORKLOAD_CREDENTIAL not set"):
        AsyncMeshClient.from_environment({"COURTYARD_MESH_URL": MESH})
    path = tmp_path / "w.jwt"
    path.write_text("tok")
    environ = {"COURTYARD_MESH_URL": MESH, "COURTYARD_WORKLOAD_CREDENTIAL": str(path)}
    mesh = AsyncMeshClient.from_environment(environ)
    assert mesh.url == MESH
    await mesh.aclose()


class _EchoHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        document = {
            "path": self.path,
            "authorization": self.headers.get("Authorization"),
            "deadline": self.headers.get("Courtyard-Deadline"),
            "body": body.decode(),
        }
        payload = json.dumps(document).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def loopback() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_call_over_a_real_loopback_socket(loopback: str, tmp_path: Path) -> None:
    path = tmp_path / "workload.jwt"
    path.write_text("tok-wire")
    with MeshClient(loopback, path, clock=ManualClock(1_800_000_000.0)) as mesh:
        answer = mesh.call("ledger", "/entries", "POST", json={"a": 1}, timeout=5).json()
    assert answer == {
        "path": "/ledger/entries",
        "authorization": "Bearer tok-wire",
        "deadline": "1800000005000",
        "body": '{"a":1}',
    }
