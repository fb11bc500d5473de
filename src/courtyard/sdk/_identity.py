"""The caller of a request as an app sees it: the verified claims of its ``Courtyard-Identity``
assertion (DESIGN.md, "Identity to apps")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from courtyard.contracts import IdentityClaims

SERVICE_PREFIX = "svc:"


@dataclass(frozen=True)
class Identity:
    """Who is calling: a person (``sub`` "u_..."), a service (``sub`` "svc:<name>") or, on a
    mesh call made on nobody's behalf, an app's workload (``sub`` "spiffe://<domain>/app/<name>").

    ``roles`` holds the caller's platform roles plus its roles in this app. ``act`` names the
    app that made the call through the mesh (its SPIFFE ID, RFC 8693 §4.1), or is None for a
    call that came straight through the gateway. ``claims`` is the whole verified claim set,
    read-only, for anything else the platform asserts. ``token`` is the assertion itself
    (empty for an identity built by hand): pass the identity as a mesh call's
    ``on_behalf_of`` and the target sees the same end user.
    """

    sub: str
    email: str = ""
    name: str = ""
    groups: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    act: str | None = None
    claims: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({}), compare=False, repr=False
    )
    token: str = field(default="", compare=False, repr=False)

    @property
    def is_service(self) -> bool:
        """True when the subject is a service account or OAuth client, not a person."""
        return self.sub.startswith(SERVICE_PREFIX)

    @property
    def display_name(self) -> str:
        """What to call the caller in a page: the name, else the email, else the id."""
        return self.name or self.email or self.sub

    def has_role(self, role: str) -> bool:
        """True when the caller holds ``role`` (a platform role or a role in this app)."""
        return role in self.roles

    def in_group(self, group: str) -> bool:
        """True when the caller is a member of ``group``."""
        return group in self.groups

    def to_claims(self) -> IdentityClaims:
        """The identity as the platform's contract types it (for code shared with Courtyard)."""
        return IdentityClaims(
            sub=self.sub,
            email=self.email,
            name=self.name,
            groups=list(self.groups),
            roles=list(self.roles),
        )
