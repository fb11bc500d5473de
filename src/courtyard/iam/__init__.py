"""Identity and access: the people directory, roles, sign-in, sessions, MFA and API tokens.

:class:`Iam` is the service (over an :class:`IamStore`: memory or SQL); under it sit the
credential primitives: argon2id password storage (OWASP Password Storage Cheat Sheet), TOTP
(RFC 6238/4226), one-time recovery codes, API tokens (OWASP ASVS V2, V6) and a login
throttle (OWASP Authentication Cheat Sheet). HTTP routes live in ``iam.api``. See
``docs/iam.md``.

Error tree::

    CourtyardError
    └── IamError
        ├── WeakPassword
        ├── WeakHashParameters
        ├── MalformedPasswordHash
        ├── MalformedTotpSecret
        ├── MalformedApiToken
        ├── UserNotFound
        ├── UserDisabled
        ├── GroupNotFound
        ├── ServiceAccountNotFound
        ├── TokenNotFound
        ├── SessionNotFound
        ├── DuplicateUser
        ├── DuplicateGroup
        ├── DuplicateServiceAccount
        ├── InvalidRole
        ├── InvalidSubject
        ├── InvalidName
        ├── InvalidEmail
        ├── InvalidInput
        ├── TotpError
        ├── AdminExists
        ├── NotAuthenticated
        ├── PermissionDenied
        └── OidcError
            ├── ClientNotFound
            ├── ClientInvalid
            └── OAuthError
"""

from courtyard.iam._bootstrap import bootstrap_admin
from courtyard.iam._errors import (
    AdminExists,
    DuplicateGroup,
    DuplicateServiceAccount,
    DuplicateUser,
    GroupNotFound,
    IamError,
    InvalidEmail,
    InvalidInput,
    InvalidName,
    InvalidRole,
    InvalidSubject,
    MalformedApiToken,
    MalformedPasswordHash,
    MalformedTotpSecret,
    NotAuthenticated,
    PermissionDenied,
    ServiceAccountNotFound,
    SessionNotFound,
    TokenNotFound,
    TotpError,
    UserDisabled,
    UserNotFound,
    WeakHashParameters,
    WeakPassword,
)
from courtyard.iam._keyring import KeyInfo, KeyRing
from courtyard.iam._models import (
    Group,
    IamConfig,
    LoginOutcome,
    Principal,
    RoleBinding,
    ServiceAccount,
    SessionInfo,
    TokenInfo,
    User,
)
from courtyard.iam._oidc import OidcProvider
from courtyard.iam._oidc_errors import ClientInvalid, ClientNotFound, OAuthError, OidcError
from courtyard.iam._oidc_models import ClientInfo, OidcConfig
from courtyard.iam._oidc_sql import SqlOidcStore
from courtyard.iam._oidc_store import MemoryOidcStore, OidcStore
from courtyard.iam._passwords import (
    MAX_PASSWORD_LENGTH,
    MIN_MEMORY_COST,
    MIN_PARALLELISM,
    MIN_PASSWORD_LENGTH,
    MIN_TIME_COST,
    PasswordHasher,
    PasswordPolicy,
)
from courtyard.iam._recovery import hash_recovery_code, new_recovery_codes, use_recovery_code
from courtyard.iam._service import AuditRecorder, CredentialListener, Iam
from courtyard.iam._sql import SqlIamStore
from courtyard.iam._store import IamStore, MemoryIamStore
from courtyard.iam._throttle import Decision, LoginThrottle, ThrottlePolicy
from courtyard.iam._tokens import (
    DEFAULT_TOKEN_PREFIX,
    ApiTokenRecord,
    IssuedToken,
    hash_api_secret,
    new_api_token,
    parse_api_token,
    token_is_usable,
    token_lookup_hash,
    verify_api_token,
)
from courtyard.iam._totp import TotpAlgorithm, TotpVerifier, new_totp_secret, provisioning_uri

__all__ = [
    "DEFAULT_TOKEN_PREFIX",
    "MAX_PASSWORD_LENGTH",
    "MIN_MEMORY_COST",
    "MIN_PARALLELISM",
    "MIN_PASSWORD_LENGTH",
    "MIN_TIME_COST",
    "AdminExists",
    "ApiTokenRecord",
    "AuditRecorder",
    "ClientInfo",
    "ClientInvalid",
    "ClientNotFound",
    "CredentialListener",
    "Decision",
    "DuplicateGroup",
    "DuplicateServiceAccount",
    "DuplicateUser",
    "Group",
    "GroupNotFound",
    "Iam",
    "IamConfig",
    "IamError",
    "IamStore",
    "InvalidEmail",
    "InvalidInput",
    "InvalidName",
    "InvalidRole",
    "InvalidSubject",
    "IssuedToken",
    "KeyInfo",
    "KeyRing",
    "LoginOutcome",
    "LoginThrottle",
    "MalformedApiToken",
    "MalformedPasswordHash",
    "MalformedTotpSecret",
    "MemoryIamStore",
    "MemoryOidcStore",
    "NotAuthenticated",
    "OAuthError",
    "OidcConfig",
    "OidcError",
    "OidcProvider",
    "OidcStore",
    "PasswordHasher",
    "PasswordPolicy",
    "PermissionDenied",
    "Principal",
    "RoleBinding",
    "ServiceAccount",
    "ServiceAccountNotFound",
    "SessionInfo",
    "SessionNotFound",
    "SqlIamStore",
    "SqlOidcStore",
    "ThrottlePolicy",
    "TokenInfo",
    "TokenNotFound",
    "TotpAlgorithm",
    "TotpError",
    "TotpVerifier",
    "User",
    "UserDisabled",
    "UserNotFound",
    "WeakHashParameters",
    "WeakPassword",
    "bootstrap_admin",
    "hash_api_secret",
    "hash_recovery_code",
    "new_api_token",
    "new_recovery_codes",
    "new_totp_secret",
    "parse_api_token",
    "provisioning_uri",
    "token_is_usable",
    "token_lookup_hash",
    "use_recovery_code",
    "verify_api_token",
]
