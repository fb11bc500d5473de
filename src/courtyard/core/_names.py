"""Names of things in the fleet."""

import re

# RFC 1123 §2.1 label as Kubernetes uses it for names: lower case, digits and '-', 1-63
# characters, starting and ending alphanumeric.
_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def is_dns_label(name: str) -> bool:
    """True when ``name`` is an RFC 1123 label (the form every service name takes)."""
    return _DNS_LABEL.fullmatch(name) is not None
