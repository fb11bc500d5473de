"""Why a credential operation was refused, worded for the person who has to fix it.

Error tree::

    CourtyardError
    └── IamError
        ├── WeakPassword              a chosen password breaks the policy (.reason)
        ├── WeakHashParameters        argon2id settings below OWASP's floor (.parameter)
        ├── MalformedPasswordHash     a stored hash is not an argon2 hash we can read
        ├── MalformedTotpSecret       a stored TOTP secret is not base32 of >= 128 bits
        ├── MalformedApiToken         presented text is not a Courtyard API token
        ├── UserNotFound              no user has that id or e-mail (.ref)
        ├── GroupNotFound             no group has that name (.name)
        ├── ServiceAccountNotFound    no service account has that name (.name)
        ├── TokenNotFound             no API token has that id (.token_id)
        ├── SessionNotFound           no live session has that id (.session_id)
        ├── DuplicateUser             the e-mail is taken (.email)
        ├── DuplicateGroup            the group name is taken (.name)
        ├── DuplicateServiceAccount   the service account name is taken (.name)
        ├── InvalidRole               not a role, or not one for that scope (.role)
        ├── InvalidSubject            a role subject is not user:/group:/service: (.subject)
        ├── InvalidName               a group or service name is not a DNS label (.name)
        ├── InvalidEmail              not an e-mail address (.email)
        ├── InvalidInput              a request field is out of range (.field)
        ├── TotpError                 TOTP enrolment refused (.reason)
        ├── AdminExists               bootstrap refused: a platform admin exists
        ├── NotAuthenticated          no caller credential (HTTP 401)
        └── PermissionDenied          the caller may not do this (HTTP 403; .action)

No message ever repeats a password, a secret or a token: these strings end up in logs.
"""

from __future__ import annotations

from courtyard.core import CourtyardError


class IamError(CourtyardError):
    """Root of every error the IAM package raises on purpose."""


class WeakPassword(IamError):
    """A password someone chose breaks the password policy; ``reason`` says which rule."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"password refused: {reason}")
        self.reason = reason


class WeakHashParameters(IamError):
    """A ``PasswordHasher`` was configured below the floor for ``parameter``."""

    def __init__(self, parameter: str, value: int, floor: int) -> None:
        super().__init__(
            f"argon2id {parameter}={value} is below the floor of {floor} "
            "(OWASP Password Storage Cheat Sheet)"
        )
        self.parameter = parameter
        self.value = value
        self.floor = floor


class MalformedPasswordHash(IamError):
    """A stored password hash could not be decoded; the credential row is damaged."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"stored password hash is malformed: {detail}")
        self.detail = detail


class MalformedTotpSecret(IamError):
    """A stored TOTP secret is not base32 of at least 128 bits; the enrolment is damaged."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"stored TOTP secret is malformed: {detail}")
        self.detail = detail


class MalformedApiToken(IamError):
    """Presented text does not have the shape ``<prefix>_<id>_<secret>``."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"not a valid API token: {detail}")
        self.detail = detail


class UserNotFound(IamError):
    """No user has the id or e-mail ``ref``."""

    def __init__(self, ref: str) -> None:
        super().__init__(f"no user {ref!r}")
        self.ref = ref


class UserDisabled(IamError):
    """The user ``ref`` exists but is disabled: nothing may act for them."""

    def __init__(self, ref: str) -> None:
        super().__init__(f"user {ref!r} is disabled")
        self.ref = ref


class GroupNotFound(IamError):
    """No group is called ``name``."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no group {name!r}")
        self.name = name


class ServiceAccountNotFound(IamError):
    """No service account is called ``name``."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no service account {name!r}")
        self.name = name


class TokenNotFound(IamError):
    """No API token has the id ``token_id``."""

    def __init__(self, token_id: str) -> None:
        super().__init__(f"no API token {token_id!r}")
        self.token_id = token_id


class SessionNotFound(IamError):
    """No live session has the public id ``session_id``."""

    def __init__(self, session_id: str) -> None:
        super().__init__(f"no session {session_id!r}")
        self.session_id = session_id


class DuplicateUser(IamError):
    """Another user already has ``email``."""

    def __init__(self, email: str) -> None:
        super().__init__(f"a user with e-mail {email!r} already exists")
        self.email = email


class DuplicateGroup(IamError):
    """A group called ``name`` already exists."""

    def __init__(self, name: str) -> None:
        super().__init__(f"group {name!r} already exists")
        self.name = name


class DuplicateServiceAccount(IamError):
    """A service account called ``name`` already exists."""

    def __init__(self, name: str) -> None:
        super().__init__(f"service account {name!r} already exists")
        self.name = name


class InvalidRole(IamError):
    """``role`` is not a platform role (without an app) or an app role (with one)."""

    def __init__(self, role: str, reason: str) -> None:
        super().__init__(f"role {role!r} refused: {reason}")
        self.role = role
        self.reason = reason


class InvalidSubject(IamError):
    """A role binding's subject is not ``user:<ref>``, ``group:<name>`` or ``service:<name>``."""

    def __init__(self, subject: str) -> None:
        super().__init__(
            f"subject {subject!r} must be user:<id or e-mail>, group:<name> or service:<name>"
        )
        self.subject = subject


class InvalidName(IamError):
    """A group or service account name is not a DNS label (lower-case, digits, '-')."""

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(
            f"{kind} name {name!r} must be 1-63 lower-case letters, digits or '-' "
            "(starting with a letter)"
        )
        self.kind = kind
        self.name = name


class InvalidEmail(IamError):
    """``email`` does not look like an e-mail address."""

    def __init__(self, email: str) -> None:
        super().__init__(f"{email[:64]!r} is not an e-mail address")
        self.email = email


class TotpError(IamError):
    """A TOTP enrolment step was refused; ``reason`` says why (never the code itself)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"two-factor authentication: {reason}")
        self.reason = reason


class AdminExists(IamError):
    """Bootstrap refused: a platform admin already exists, so nothing was created."""

    def __init__(self) -> None:
        super().__init__("a platform admin already exists; sign in as that admin instead")


class InvalidInput(IamError):
    """A request field is out of range; ``field`` names it."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class NotAuthenticated(IamError):
    """The request carries no valid credential."""

    def __init__(self) -> None:
        super().__init__("sign in or present an API token")


class PermissionDenied(IamError):
    """The caller is authenticated but may not ``action``."""

    def __init__(self, action: str) -> None:
        super().__init__(f"you may not {action}")
        self.action = action
