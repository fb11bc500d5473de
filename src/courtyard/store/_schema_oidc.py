"""OpenID Connect provider tables (courtyard.iam's OIDC side): clients, authorization codes,
refresh token families, revoked access tokens and signing keys. Created by migration 0004."""

from courtyard.store._schema import metadata

__all__ = ["metadata"]
