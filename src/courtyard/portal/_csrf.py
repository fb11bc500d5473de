"""Anti-forgery tokens for every portal form (OWASP CSRF Prevention Cheat Sheet).

Before sign-in there is no session to bind to, so login forms use a signed double-submit
token ("login CSRF"): a cookie and a hidden field carrying the same HMAC-signed value. Once
signed in, a form's token is HMAC(secret, session id): nothing to store, useless elsewhere.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from courtyard.core import Clock

LOGIN_TOKEN_TTL = 2 * 3600.0  # a sign-in form left open longer than this must be reloaded
_CLOCK_SKEW = 60.0


def _encode(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _same(left: str, right: str) -> bool:
    # compare_digest on str refuses non-ASCII; compare bytes (OWASP: constant time).
    return hmac.compare_digest(left.encode(), right.encode())


class CsrfTokens:
    """Issues and checks the portal's anti-forgery tokens with one secret."""

    def __init__(self, secret: bytes, clock: Clock) -> None:
        self._secret = secret
        self._clock = clock

    def _mac(self, purpose: str, value: str) -> str:
        message = f"{purpose}\x00{value}".encode()
        return _encode(hmac.new(self._secret, message, hashlib.sha256).digest())

    def new_login_token(self) -> str:
        """``<issued>.<nonce>.<mac>``: goes in the ``courtyard_csrf`` cookie and the form."""
        body = f"{int(self._clock.time())}.{secrets.token_urlsafe(18)}"
        return f"{body}.{self._mac('login', body)}"

    def is_valid_login_token(self, token: str | None) -> bool:
        """Signed by us and not older than :data:`LOGIN_TOKEN_TTL`."""
        if not token or len(token) > 200:
            return False
        body, _, mac = token.rpartition(".")
        issued, _, nonce = body.partition(".")
        if not (issued.isdigit() and nonce and _same(mac, self._mac("login", body))):
            return False
        age = self._clock.time() - int(issued)
        return -_CLOCK_SKEW <= age <= LOGIN_TOKEN_TTL

    def check_login(self, cookie: str | None, field: str | None) -> bool:
        """The double submit: the cookie and the field are equal and the value is ours."""
        if not cookie or not field or not _same(cookie, field):
            return False
        return self.is_valid_login_token(cookie)

    def for_session(self, session_id: str) -> str:
        """The token every form of a signed-in page carries."""
        return self._mac("session", session_id)

    def check_session(self, session_id: str | None, field: str | None) -> bool:
        """``field`` is the token of this session."""
        if not session_id or not field:
            return False
        return _same(field, self.for_session(session_id))
