"""What the CLI tests share: an API served on loopback by uvicorn in a thread, and a Typer
root holding one command group, so a command runs as a user runs it, over real HTTP."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import typer
import uvicorn


@contextlib.contextmanager
def served(app: Any) -> Iterator[str]:
    """``app`` on 127.0.0.1 at a free port for the block; its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the test node did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def cli_of(register: Callable[[typer.Typer], None]) -> typer.Typer:
    """A root command with only what ``register`` adds."""
    root = typer.Typer(add_completion=False)

    @root.callback()
    def main() -> None:
        """Test root."""

    register(root)
    return root
