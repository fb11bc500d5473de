"""The first platform admin, created once when a node starts with an empty directory.

Without a password given, a strong one is generated (144 random bits) and returned to be shown
once; the account can then set its own (NIST SP 800-63B §5.1.1).
"""

from __future__ import annotations

import secrets

from courtyard.iam._errors import AdminExists
from courtyard.iam._models import ADMIN_ROLE, User
from courtyard.iam._service import Iam


async def bootstrap_admin(iam: Iam, email: str, password: str | None) -> tuple[User, str | None]:
    """Create ``email`` as platform admin: ``(user, generated password or None)``.

    Idempotent: when ``email`` already is a platform admin, returns it (and no password).
    Raises AdminExists, creating nothing, when some other platform admin exists.
    """
    for binding in await iam.list_bindings(app=""):
        if binding.role != ADMIN_ROLE:
            continue
        if binding.subject.startswith("user:"):
            admin = await iam.get_user(binding.subject.removeprefix("user:"))
            if admin.email == email.strip().lower():
                return admin, None
        raise AdminExists()
    generated = None
    if password is None:
        generated = password = secrets.token_urlsafe(18)
    user = await iam.create_user(None, email, "Administrator", password, roles=(ADMIN_ROLE,))
    return user, generated
