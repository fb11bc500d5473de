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
    """Who is calling: a person (``sub`` "u_...") or a service (``sub`` "svc:<name>").

    ``roles`` holds the caller's platform roles plus its roles in this app. ``act`` names the
    service that made the call through the mesh on the subject's behalf (RFC 8693 §4.1), or is
    None for a call that came straight through the gateway. ``claims`` is the whole verified
    claim set, read-only, for anything else the platform asserts.
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
