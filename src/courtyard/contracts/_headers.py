"""Header names of the public contract (DESIGN.md, "Identity to apps")."""

IDENTITY_HEADER = "Courtyard-Identity"
REQUEST_ID = "X-Request-Id"
TRACEPARENT = "traceparent"
FORWARDED_PREFIX = "X-Forwarded-Prefix"
