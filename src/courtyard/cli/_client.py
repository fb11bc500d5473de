"""The CLI's HTTP client for the control-plane API; turns every failure into one clear line."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from courtyard.core import CourtyardError
from courtyard.node import read_node_info

DEFAULT_URL = "http://127.0.0.1:8080"


class CliError(CourtyardError):
    """Something the CLI reports as one line and a non-zero exit."""

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.details = details or []


@dataclass(frozen=True)
class Target:
    """Which node to talk to, and with what credential."""

    url: str
    token: str | None


def resolve_target(url: str | None, data_dir: Path) -> Target:
    """Flag or COURTYARD_URL, else the running node's ``node.json``, else the default URL."""
    env_token = os.environ.get("COURTYARD_TOKEN")
    token = env_token
    if token is None:
        try:
            token = (data_dir / "admin.token").read_text(encoding="utf-8").strip()
        except OSError:
            token = None
    if url is None:
        info = read_node_info(data_dir)
        url = info.url if info is not None else DEFAULT_URL
    return Target(url=url.rstrip("/"), token=token)


def _problem_lines(response: httpx.Response) -> CliError:
    try:
        document = response.json()
    except ValueError:
        return CliError(f"the node answered {response.status_code}: {response.text[:200]}")
    if not isinstance(document, dict):
        return CliError(f"the node answered {response.status_code}")
    title = document.get("title", f"HTTP {response.status_code}")
    detail = document.get("detail")
    details = [
        " ".join(str(part) for part in (e.get("source"), e.get("field"), e.get("message")) if part)
        for e in document.get("errors", [])
        if isinstance(e, dict)
    ]
    message = f"{title}: {detail}" if detail else str(title)
    if response.status_code == 401:
        message += " (is COURTYARD_TOKEN or --data-dir right?)"
    return CliError(message, details)


class ApiClient:
    """Thin synchronous client: one method per API call the CLI makes."""

    def __init__(self, target: Target, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {target.token}"} if target.token else {}
        self.url = target.url
        self._http = httpx.Client(base_url=target.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise CliError(
                f"no Courtyard node answers at {self.url}; start one with `courtyard up`"
            ) from None
        except httpx.TimeoutException:
            raise CliError(f"the node at {self.url} did not answer in time") from None
        except httpx.HTTPError as exc:
            raise CliError(f"talking to {self.url} failed: {exc}") from None
        if response.status_code >= 400:
            raise _problem_lines(response)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def stream_lines(self, path: str, params: dict[str, Any]) -> Iterator[bytes]:
        try:
            with self._http.stream("GET", path, params=params, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _problem_lines(response)
                yield from response.iter_bytes()
        except httpx.ConnectError:
            raise CliError(
                f"no Courtyard node answers at {self.url}; start one with `courtyard up`"
            ) from None
        except httpx.RemoteProtocolError:
            raise CliError("the node closed the log stream") from None
