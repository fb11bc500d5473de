"""What the node hands the portal: its settings and the apps it may list (the portal reads no
catalog itself; it sits on the edge layer and is given what it needs)."""

from __future__ import annotations

from dataclasses import dataclass, field

from courtyard.contracts import AccessPolicy
from courtyard.iam import IamConfig

# OWASP CSRF Cheat Sheet: the signing key needs at least 256 bits of entropy.
MIN_CSRF_SECRET_BYTES = 32


@dataclass(frozen=True)
class LauncherApp:
    """One app as the launcher shows it; ``access`` decides who sees it."""

    name: str
    title: str
    owner: str
    stage: str
    url: str
    access: AccessPolicy


@dataclass(frozen=True)
class PortalConfig:
    """The portal's settings, read once by the node.

    ``csrf_secret`` signs the anti-forgery tokens of every form (a random per-node secret).
    A ``__Host-`` cookie must be Secure with Path=/ and no Domain (RFC 6265bis §4.1.3.2).
    """

    issuer: str
    cookie_name: str
    csrf_secret: bytes = field(repr=False)
    cookie_secure: bool = False
    product_name: str = "Courtyard"

    def __post_init__(self) -> None:
        if len(self.csrf_secret) < MIN_CSRF_SECRET_BYTES:
            raise ValueError(f"csrf_secret needs at least {MIN_CSRF_SECRET_BYTES} bytes")
        if self.cookie_name.startswith("__Host-") and not self.cookie_secure:
            raise ValueError("a __Host- cookie needs cookie_secure (RFC 6265bis §4.1.3.2)")
        if not self.cookie_name:
            raise ValueError("cookie_name must not be empty")

    @classmethod
    def for_iam(
        cls, config: IamConfig, csrf_secret: bytes, *, product_name: str = "Courtyard"
    ) -> PortalConfig:
        """The settings that agree with IAM's: same issuer, cookie name and Secure flag."""
        return cls(
            issuer=config.issuer,
            cookie_name=config.cookie_name,
            csrf_secret=csrf_secret,
            cookie_secure=config.cookie_secure,
            product_name=product_name,
        )
