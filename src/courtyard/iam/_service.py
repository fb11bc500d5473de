"""The IAM service: the people directory, roles, sign-in, sessions, MFA and API tokens.

Store calls block (SQLite, PostgreSQL) and argon2 burns CPU, so both run in worker threads.
Every change is audited (never a secret) and announced to subscribers, who push the changed
credentials to the gateway workers. The parts live in ``_directory``, ``_signin`` and
``_credentials``; their shared state in ``_base``.
"""

from __future__ import annotations

from courtyard.iam._base import AuditRecorder, CredentialListener, normalize_email
from courtyard.iam._credentials import TokenOps
from courtyard.iam._directory import DirectoryOps
from courtyard.iam._signin import SignInOps

__all__ = ["AuditRecorder", "CredentialListener", "Iam", "normalize_email"]


class Iam(DirectoryOps, SignInOps, TokenOps):
    """Users, groups, roles, service accounts and every credential they sign in with.

    ``Iam(store, config, audit, *, clock=None, hasher=None, throttle=None)``. Admin-only
    checks are the API's; the service trusts ``caller`` as the audit actor (``None`` means
    the platform itself).
    """
