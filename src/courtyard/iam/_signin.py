"""Signing in and staying signed in: passwords (throttled, uniform failures), the second
factor, server-side sessions and their timeouts (OWASP Authentication and Session Management
Cheat Sheets, ASVS V2.2, V3).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import replace

from courtyard.audit import Actor
from courtyard.iam._base import IamBase, normalize_email
from courtyard.iam._errors import SessionNotFound, TotpError
from courtyard.iam._models import LoginOutcome, Principal, SessionInfo, UserRecord
from courtyard.iam._principals import user_principal
from courtyard.iam._recovery import hash_recovery_code, new_recovery_codes, use_recovery_code
from courtyard.iam._sessions import (
    TOUCH_INTERVAL,
    PendingSignIn,
    auth_method,
    new_session,
    secret_key,
    session_credential,
    touched,
)
from courtyard.iam._totp import new_totp_secret, provisioning_uri

PENDING_TTL = 300.0  # the password step's proof lives five minutes
_PENDING_ATTEMPTS = 5
_MAX_PENDING = 10_000
PURGE_AFTER = 7 * 86_400.0  # ended sessions stay listed for audit questions this long


class SignInOps(IamBase):
    """Sign-in, sessions and TOTP enrolment (part of :class:`courtyard.iam.Iam`)."""

    # -- sign-in (OWASP ASVS V2.2, Authentication Cheat Sheet) ---------------------------------

    async def login(
        self, email: str, password: str, *, client: str, user_agent: str = ""
    ) -> LoginOutcome:
        """Check a password. Unknown user and wrong password answer alike, in the same time;
        a throttled attempt is refused before the password is looked at."""
        account = normalize_email(email)[:254]
        target = f"user:{account}" if account else "user:-"
        decision = self._throttle.check(account, client)
        if not decision.allowed:
            await self._record(
                Actor("user", "anonymous", "password"),
                "auth.login",
                target,
                "failure",
                reason="throttled",
                details={"client": client},
            )
            return LoginOutcome("throttled", retry_after=decision.retry_after)
        record = await self._run(self._store.find_user, account) if account else None
        valid = await self._run(self._check_password, record, password)
        if record is None or not valid or record.status != "active":
            self._throttle.record_failure(account, client)
            actor = Actor("user", record.id if record else "anonymous", "password")
            await self._record(
                actor,
                "auth.login",
                target,
                "failure",
                reason="bad credentials",
                details={"client": client},
            )
            return LoginOutcome("failed")
        self._throttle.record_success(account, client)
        if record.password_hash is not None and self._hasher.needs_rehash(record.password_hash):
            new_hash = await self._run(self._hasher.hash, password)
            await self._run(self._store.put_user, replace(record, password_hash=new_hash))
        if record.totp_secret is not None:
            return LoginOutcome("totp_required", pending=self._new_pending(record.id, account))
        return await self._start_session(record, ("password",), client, user_agent)

    def _check_password(self, record: UserRecord | None, password: str) -> bool:
        if record is None or record.password_hash is None:
            self._hasher.dummy_verify()
            return False
        return self._hasher.verify(record.password_hash, password)

    def _new_pending(self, user_id: str, account: str) -> str:
        now = self._clock.monotonic()
        self._pending = {k: p for k, p in self._pending.items() if p.expires_at > now}
        while len(self._pending) >= _MAX_PENDING:
            del self._pending[next(iter(self._pending))]
        pending = secrets.token_urlsafe(32)
        self._pending[secret_key(pending)] = PendingSignIn(user_id, account, now + PENDING_TTL)
        return pending

    async def login_totp(
        self, pending: str, code: str, *, client: str, user_agent: str = ""
    ) -> LoginOutcome:
        """The second step: a TOTP code (each time step once) or a recovery code (each once)."""
        key = secret_key(pending)
        state = self._pending.get(key)
        if state is None or state.expires_at <= self._clock.monotonic():
            self._pending.pop(key, None)
            return LoginOutcome("failed")
        decision = self._throttle.check(state.account, client)
        target = f"user:{state.user_id}"
        actor = Actor("user", state.user_id, "password")
        if not decision.allowed:
            await self._record(
                actor,
                "auth.login",
                target,
                "failure",
                reason="throttled",
                details={"client": client},
            )
            return LoginOutcome("throttled", retry_after=decision.retry_after, pending=pending)
        record = await self._run(self._store.get_user, state.user_id)
        method = await self._run(self._second_factor, record, code)
        if method is None or record.status != "active":
            self._throttle.record_failure(state.account, client)
            state.failures += 1
            if state.failures >= _PENDING_ATTEMPTS:
                del self._pending[key]
            await self._record(
                actor, "auth.login", target, "failure", reason="totp", details={"client": client}
            )
            return LoginOutcome("failed")
        del self._pending[key]
        self._throttle.record_success(state.account, client)
        return await self._start_session(record, ("password", method), client, user_agent)

    def _second_factor(self, record: UserRecord, code: str) -> str | None:
        """``"totp"`` or ``"recovery"`` when ``code`` is good (and now spent), else None."""
        if record.totp_secret is None:
            return None
        typed = code.strip()
        if len(typed.replace(" ", "")) > 10:
            remaining = use_recovery_code(record.recovery_codes, typed)
            if remaining is None:
                return None
            spent = self._store.spend_recovery_code(record.id, record.recovery_codes, remaining)
            return "recovery" if spent else None
        step = self._totp.verify(record.totp_secret, typed, record.totp_last_step)
        if step is None or not self._store.use_totp_step(record.id, step):
            return None
        return "totp"

    async def _start_session(
        self, record: UserRecord, methods: tuple[str, ...], client: str, user_agent: str
    ) -> LoginOutcome:
        now = self._clock.time()
        cookie, session = new_session(
            record.id, now, self._config, client=client, user_agent=user_agent, methods=methods
        )
        await self._run(self._store.add_session, session)
        principal = await self._run(
            user_principal, self._store, record, auth_method(methods), session.id, ()
        )
        await self._record(
            principal,
            "auth.login",
            f"user:{record.id}",
            details={"client": client, "methods": list(methods), "session": session.id},
        )
        self._notify([session_credential(principal, session)], [])
        return LoginOutcome("ok", cookie=cookie, session=session.info())

    async def logout(self, cookie: str) -> None:
        """End the session of ``cookie`` (nothing happens for an unknown cookie)."""
        sessions = await self._run(self._store.sessions_by_keys, [secret_key(cookie)])
        ids = [s.id for s in sessions if s.revoked_at is None]
        revoked = await self._run(self._store.revoke_sessions, ids, self._clock.time())
        for session in revoked:
            await self._record(
                Actor("user", session.user_id, auth_method(session.methods)),
                "auth.logout",
                f"session:{session.id}",
            )
        self._notify([], [s.key_hash for s in revoked])

    # -- sessions -----------------------------------------------------------------------------

    async def authenticate_session(self, cookie: str) -> Principal | None:
        """The user signed in with ``cookie``, or None (unknown, ended, idle or disabled)."""
        if not cookie:
            return None
        now = self._clock.time()
        found = await self._run(self._store.sessions_by_keys, [secret_key(cookie)])
        if not found or not found[0].is_live(now):
            return None
        session = found[0]
        record = await self._run(self._store.get_user, session.user_id)
        if record.status != "active":
            return None
        seen = touched(session, now, self._config.session_idle)
        if seen is not None:
            await self._run(self._store.touch_sessions, {session.id: seen})
        return await self._run(
            user_principal, self._store, record, auth_method(session.methods), session.id, ()
        )

    async def list_sessions(self, user_ref: str) -> list[SessionInfo]:
        """The user's live sessions, oldest first."""
        record = await self._user(user_ref)
        now = self._clock.time()
        sessions = await self._run(self._store.list_sessions, record.id)
        return [s.info() for s in sessions if s.is_live(now)]

    async def get_session(self, session_id: str) -> SessionInfo:
        """One live session; raises SessionNotFound."""
        session = await self._run(self._store.get_session, session_id)
        if not session.is_live(self._clock.time()):
            raise SessionNotFound(session_id)
        return session.info()

    async def revoke_session(self, caller: Principal | None, session_id: str) -> None:
        """End a session now; raises SessionNotFound if it is not live."""
        session = await self._run(self._store.get_session, session_id)
        if not session.is_live(self._clock.time()):
            raise SessionNotFound(session_id)
        revoked = await self._run(self._store.revoke_sessions, [session_id], self._clock.time())
        await self._record(
            caller,
            "auth.session.revoke",
            f"session:{session_id}",
            details={"user": session.user_id},
        )
        self._notify([], [s.key_hash for s in revoked])

    async def touch(self, keys: Iterable[str]) -> None:
        """Record use of sessions and tokens the gateway saw (by key), at most once a minute."""
        wanted = sorted(set(keys))
        if not wanted:
            return
        now = self._clock.time()
        idle = self._config.session_idle
        sessions = await self._run(self._store.sessions_by_keys, wanted)
        seen = {s.id: t for s in sessions if (t := touched(s, now, idle)) is not None}
        await self._run(self._store.touch_sessions, seen)
        tokens = await self._run(self._store.tokens_by_lookup, wanted)
        used = {
            t.id: now
            for t in tokens
            if t.is_live(now) and (t.last_used_at is None or now - t.last_used_at >= TOUCH_INTERVAL)
        }
        await self._run(self._store.touch_tokens, used)

    async def expire_sessions(self) -> int:
        """End sessions past their idle or absolute timeout; returns how many ended."""
        now = self._clock.time()
        sessions = await self._run(self._store.list_sessions, None)
        ended = [s.id for s in sessions if not s.is_live(now)]
        revoked = await self._run(self._store.revoke_sessions, ended, now)
        await self._run(self._store.purge_sessions, now - PURGE_AFTER)
        monotonic = self._clock.monotonic()
        self._pending = {k: p for k, p in self._pending.items() if p.expires_at > monotonic}
        self._notify([], [s.key_hash for s in revoked])
        return len(revoked)

    # -- MFA (RFC 6238; OWASP MFA Cheat Sheet) -------------------------------------------------

    async def begin_totp(self, user_ref: str) -> tuple[str, str]:
        """Start enrolment: ``(secret, otpauth URI)``; nothing changes until confirmed."""
        record = await self._user(user_ref)
        if record.totp_secret is not None:
            raise TotpError("it is already enabled; disable it before enrolling again")
        secret = new_totp_secret()
        await self._run(self._store.put_user, replace(record, totp_pending=secret))
        uri = provisioning_uri(secret, record.email, self._config.totp_issuer)
        return secret, uri

    async def confirm_totp(self, user_ref: str, code: str) -> list[str]:
        """Finish enrolment with a first code; returns recovery codes (show them once)."""
        record = await self._user(user_ref)
        if record.totp_pending is None:
            raise TotpError("no enrolment is in progress; start one first")
        step = self._totp.verify(record.totp_pending, code, None)
        if step is None:
            raise TotpError("the code is wrong or has expired; try the current one")
        codes = new_recovery_codes()
        hashes = [hash_recovery_code(c) for c in codes]
        await self._run(self._store.set_totp, record.id, record.totp_pending, step, hashes)
        await self._record(Actor("user", record.id), "auth.mfa.enroll", f"user:{record.id}")
        return codes

    async def disable_totp(self, caller: Principal | None, user_ref: str) -> None:
        """Remove the second factor and its recovery codes."""
        record = await self._user(user_ref)
        await self._run(self._store.set_totp, record.id, None, None, ())
        await self._record(caller, "auth.mfa.disable", f"user:{record.id}")
