"""Workload credentials of instances: the short-lived JWT an app presents to the mesh.

The supervisor does not mint credentials (the mesh does, with the platform's keys); it asks a
:class:`CredentialIssuer` for one before each process starts, keeps it in the instance's
working directory as ``workload.jwt`` (0600, replaced atomically so a reader never sees half a
token), rewrites it when 2/3 of its lifetime has passed, and releases it the moment the process
is gone, so the credential of a stopped, crashed or replaced instance stops working at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from courtyard.core import Clock

log = logging.getLogger("courtyard.runtime")

CREDENTIAL_FILE = "workload.jwt"
MESH_URL_KEY = "COURTYARD_MESH_URL"
CREDENTIAL_KEY = "COURTYARD_WORKLOAD_CREDENTIAL"
REFRESH_AT = 2 / 3  # share of a credential's lifetime after which a new one is written
RETRY_DELAY = 5.0  # seconds before a failed refresh is tried again (capped by what is left)


@dataclass(frozen=True)
class IssuedCredential:
    """A workload credential: the token the app presents and when it stops being accepted."""

    token: str
    expires_at: float  # seconds since the epoch


class CredentialIssuer(Protocol):
    """Mints and revokes workload credentials (courtyard.mesh.WorkloadIdentities).

    Both return once the data plane enforces the change, so a token the supervisor writes is
    already accepted and a released one already refused.
    """

    async def issue(self, app: str, instance: str) -> IssuedCredential:
        """A new credential for ``instance`` of ``app``; earlier ones stay valid until expiry."""
        ...

    async def release(self, app: str, instance: str) -> None:
        """Revoke every credential of ``instance`` at once (nothing if it has none)."""
        ...


def write_credential(path: Path, token: str) -> None:
    """Replace ``path`` with ``token``, mode 0600, atomically (rename(2) in the same folder)."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as file:
            file.write(token)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


class WorkloadCredential:
    """One instance's credential file, kept fresh while its process runs.

    :meth:`open` before each start of the process (it releases what a previous process held),
    :meth:`close` once that process is gone. Neither is called concurrently with the other.
    """

    def __init__(
        self,
        issuer: CredentialIssuer,
        *,
        app: str,
        instance: str,
        workdir: Path,
        clock: Clock,
        mesh_url: str | None,
    ) -> None:
        self.app = app
        self.instance = instance
        self.path = workdir / CREDENTIAL_FILE
        self._issuer = issuer
        self._clock = clock
        self._mesh_url = mesh_url
        self._is_open = False
        self._refresher: asyncio.Task[None] | None = None
        self.refreshes = 0  # credentials written after the first one (for status and tests)

    def environment(self) -> dict[str, str]:
        """The variables that tell the app where the mesh is and where its credential lies."""
        env = {CREDENTIAL_KEY: str(self.path)}
        if self._mesh_url:
            env[MESH_URL_KEY] = self._mesh_url
        return env

    async def open(self) -> None:
        """Get a fresh credential, write it, and start refreshing it; raises if it cannot."""
        await self.close()
        self._is_open = True  # from here on close() releases, even if issue() is cut short
        credential = await self._issuer.issue(self.app, self.instance)
        issued_at = self._clock.time()
        write_credential(self.path, credential.token)
        self._refresher = asyncio.create_task(
            self._refresh(credential, issued_at), name=f"workload-{self.instance}"
        )

    async def close(self) -> None:
        """Stop refreshing, revoke the credential and delete the file (never raises)."""
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.wait({self._refresher})
            self._refresher = None
        if not self._is_open:
            return
        try:
            await self._issuer.release(self.app, self.instance)
        except Exception:
            log.exception("instance %s: cannot release its workload credential", self.instance)
        # Only now: a release cut short by a cancellation is repeated by the next close().
        self._is_open = False
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)

    async def _refresh(self, credential: IssuedCredential, issued_at: float) -> None:
        """Rewrite the file at 2/3 of each credential's lifetime, for as long as it runs."""
        due = issued_at + (credential.expires_at - issued_at) * REFRESH_AT
        while True:
            await self._clock.sleep(max(0.0, due - self._clock.time()))
            try:
                fresh = await self._issuer.issue(self.app, self.instance)
                now = self._clock.time()
                write_credential(self.path, fresh.token)
            except Exception as exc:
                # The current credential is still good until it expires: try again soon.
                left = credential.expires_at - self._clock.time()
                log.warning(
                    "instance %s: cannot refresh its workload credential (%.0f s left): %s",
                    self.instance,
                    left,
                    exc,
                )
                due = self._clock.time() + max(1.0, min(RETRY_DELAY, left / 2))
                continue
            credential, self.refreshes = fresh, self.refreshes + 1
            due = now + (fresh.expires_at - now) * REFRESH_AT
