"""Why the OpenID Connect provider refused something: client registry errors and the OAuth 2.0
protocol errors (RFC 6749 §4.1.2.1, §5.2) that the HTTP face turns into responses.

Error tree::

    IamError
    └── OidcError
        ├── ClientNotFound      no client has that id (.client_id)
        ├── ClientInvalid       a registration breaks a rule (.field)
        └── OAuthError          an RFC 6749 error code (.error) and description
"""

from __future__ import annotations

from courtyard.iam._errors import IamError


class OidcError(IamError):
    """Root of the OpenID Connect provider's errors."""


class ClientNotFound(OidcError):
    """No OAuth client is registered as ``client_id``."""

    def __init__(self, client_id: str) -> None:
        super().__init__(f"no OAuth client {client_id!r}")
        self.client_id = client_id


class ClientInvalid(OidcError):
    """A client registration that breaks a rule; ``field`` names the offending member."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class OAuthError(OidcError):
    """An OAuth 2.0 error response: ``error`` is the RFC 6749 code (invalid_grant, ...).

    ``description`` is safe to show to the client (it never holds a token or a secret).
    """

    def __init__(self, error: str, description: str = "", *, basic: bool = False) -> None:
        super().__init__(f"{error}: {description}" if description else error)
        self.error = error
        self.description = description
        self.basic = basic  # the client tried HTTP Basic: answer with a Basic challenge
