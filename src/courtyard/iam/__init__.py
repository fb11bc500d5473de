"""Identity and access: the credential core (passwords, TOTP, recovery codes, API tokens).

Pure code with no HTTP and no database: argon2id password storage (OWASP Password Storage
Cheat Sheet), TOTP (RFC 6238/4226), one-time recovery codes, API tokens (OWASP ASVS V2, V6)
and a login throttle (OWASP Authentication Cheat Sheet). See ``docs/iam.md``.

Error tree::

    CourtyardError
    └── IamError
        ├── WeakPassword
        ├── WeakHashParameters
        ├── MalformedPasswordHash
        ├── MalformedTotpSecret
        └── MalformedApiToken
"""

from courtyard.iam._errors import (
    IamError,
    MalformedApiToken,
    MalformedPasswordHash,
    MalformedTotpSecret,
    WeakHashParameters,
    WeakPassword,
)
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
from courtyard.iam._throttle import Decision, LoginThrottle, ThrottlePolicy
from courtyard.iam._tokens import (
    DEFAULT_TOKEN_PREFIX,
    ApiTokenRecord,
    IssuedToken,
    hash_api_secret,
    new_api_token,
    parse_api_token,
    token_is_usable,
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
    "ApiTokenRecord",
    "Decision",
    "IamError",
    "IssuedToken",
    "LoginThrottle",
    "MalformedApiToken",
    "MalformedPasswordHash",
    "MalformedTotpSecret",
    "PasswordHasher",
    "PasswordPolicy",
    "ThrottlePolicy",
    "TotpAlgorithm",
    "TotpVerifier",
    "WeakHashParameters",
    "WeakPassword",
    "hash_api_secret",
    "hash_recovery_code",
    "new_api_token",
    "new_recovery_codes",
    "new_totp_secret",
    "parse_api_token",
    "provisioning_uri",
    "token_is_usable",
    "use_recovery_code",
    "verify_api_token",
]
