"""The IAM service: directory, sign-in (throttled, uniform failures), sessions, MFA, tokens
and the gateway feed; all on a fake clock."""

from __future__ import annotations

import hashlib

import pytest

from courtyard.contracts import GatewayCredential
from courtyard.core import FakeClock
from courtyard.iam import (
    AdminExists,
    DuplicateUser,
    Iam,
    IamConfig,
    InvalidRole,
    MemoryIamStore,
    PasswordHasher,
    SessionNotFound,
    TotpError,
    TotpVerifier,
    UserDisabled,
    UserNotFound,
    WeakPassword,
    bootstrap_admin,
)
from fakes import RecordingAudit

PASSWORD = "correct horse battery"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Feed:
    def __init__(self) -> None:
        self.upserts: list[GatewayCredential] = []
        self.revoked: list[str] = []

    def __call__(self, upserts: list[GatewayCredential], revoked: list[str]) -> None:
        self.upserts.extend(upserts)
        self.revoked.extend(revoked)


async def test_users_are_created_found_by_email_and_duplicates_refused(iam: Iam) -> None:
    ada = await iam.create_user(None, "Ada@Example.com", "Ada", PASSWORD)
    assert ada.email == "ada@example.com" and ada.id.startswith("u_") and ada.has_password
    assert await iam.get_user("ADA@example.com") == ada
    with pytest.raises(DuplicateUser):
        await iam.create_user(None, "ada@example.com", "Other")
    with pytest.raises(WeakPassword):
        await iam.create_user(None, "bob@example.com", "Bob", "password")
    with pytest.raises(UserNotFound):
        await iam.get_user("nobody@example.com")


async def test_login_succeeds_with_a_fresh_session_each_time(
    iam: Iam, audit: RecordingAudit
) -> None:
    ada = await iam.create_user(None, "ada@example.com", "Ada", PASSWORD)
    first = await iam.login("ada@example.com", PASSWORD, client="10.0.0.1")
    second = await iam.login("ADA@example.com", PASSWORD, client="10.0.0.1")
    assert first.status == second.status == "ok"
    assert first.cookie and second.cookie and first.cookie != second.cookie
    assert first.session and second.session and first.session.id != second.session.id
    principal = await iam.authenticate_session(first.cookie)
    assert principal is not None and principal.id == ada.id and principal.auth == "password"
    assert principal.session_id == first.session.id
    assert ("auth.login", f"user:{ada.id}", "success") in audit.actions()
    assert all(PASSWORD not in repr(e) and first.cookie not in repr(e) for e in audit.events)


async def test_unknown_user_and_wrong_password_fail_alike(iam: Iam, audit: RecordingAudit) -> None:
    await iam.create_user(None, "ada@example.com", "Ada", PASSWORD)
    unknown = await iam.login("eve@example.com", PASSWORD, client="10.0.0.2")
    wrong = await iam.login("ada@example.com", "not the password", client="10.0.0.3")
    assert unknown == wrong
    assert unknown.status == "failed"
    reasons = {e.reason for e in audit.events if e.outcome == "failure"}
    assert reasons == {"bad credentials"}


class CountingHasher(PasswordHasher):
    def __init__(self) -> None:
        super().__init__(time_cost=2)
        self.verifies = 0
        self.dummies = 0

    def verify(self, stored: str, password: str) -> bool:
        self.verifies += 1
        return super().verify(stored, password)

    def dummy_verify(self) -> None:
        self.dummies += 1
        super().dummy_verify()


async def test_throttled_attempts_skip_the_password_and_the_owner_gets_in_later(
    clock: FakeClock, audit: RecordingAudit
) -> None:
    hasher = CountingHasher()
    iam = Iam(MemoryIamStore(), IamConfig(), audit, clock=clock, hasher=hasher)
    await iam.create_user(None, "ada@example.com", "Ada", PASSWORD)
    outcomes = [
        (await iam.login("ada@example.com", "guess", client=f"10.0.1.{n}")).status for n in range(4)
    ]
    assert outcomes == ["failed"] * 4
    checked = hasher.verifies
    throttled = await iam.login("ada@example.com", PASSWORD, client="10.0.2.1")
    assert throttled.status == "throttled" and throttled.retry_after > 0
    assert hasher.verifies == checked  # the password was not even looked at
    assert audit.events[-1].reason == "throttled"
    # Unknown accounts are throttled the same way (and cost a dummy verification).
    for _ in range(4):
        await iam.login("eve@example.com", "guess", client="10.0.3.1")
    assert hasher.dummies == 4
    assert (await iam.login("eve@example.com", "x", client="10.0.3.2")).status == "throttled"
    for _ in range(20):
        await iam.login("ada@example.com", "guess", client="10.0.4.1")
        await clock.advance(31)
    await clock.advance(31)
    assert (await iam.login("ada@example.com", PASSWORD, client="10.0.5.1")).status == "ok"


async def test_passwords_are_rehashed_when_parameters_rise(
    clock: FakeClock, audit: RecordingAudit
) -> None:
    store = MemoryIamStore()
    weak = Iam(store, IamConfig(), audit, clock=clock, hasher=PasswordHasher(time_cost=2))
    ada = await weak.create_user(None, "ada@example.com", "Ada", PASSWORD)
    stronger = PasswordHasher(time_cost=3)
    iam = Iam(store, IamConfig(), audit, clock=clock, hasher=stronger)
    assert (await iam.login("ada@example.com", PASSWORD, client="c")).status == "ok"
    stored = store.get_user(ada.id).password_hash
    assert stored is not None and not stronger.needs_rehash(stored)


async def test_sessions_end_after_idle_and_absolute_timeouts(iam: Iam, clock: FakeClock) -> None:
    feed = Feed()
    iam.subscribe(feed)
    await iam.create_user(None, "ada@example.com", "Ada", PASSWORD)
    idle = await iam.login("ada@example.com", PASSWORD, client="c")
    busy = await iam.login("ada@example.com", PASSWORD, client="c")
    assert idle.cookie and busy.cookie and busy.session
    assert {c["key"] for c in feed.upserts} == {sha(idle.cookie), sha(busy.cookie)}
    for _ in range(30):  # busy is used every minute (by the gateway), idle never
        await clock.advance(61)
        await iam.touch([sha(busy.cookie)])
    assert await iam.authenticate_session(idle.cookie) is None
    assert await iam.authenticate_session(busy.cookie) is not None
    assert await iam.expire_sessions() == 1
    assert feed.revoked == [sha(idle.cookie)]
    await clock.advance(43_200)
    assert await iam.authenticate_session(busy.cookie) is None
    assert await iam.expire_sessions() == 1


async def test_sessions_are_listed_and_revoked(iam: Iam, audit: RecordingAudit) -> None:
    feed = Feed()
    iam.subscribe(feed)
    ada = await iam.create_user(None, "ada@example.com", "Ada", PASSWORD)
    outcome = await iam.login("ada@example.com", PASSWORD, client="10.0.0.1", user_agent="UA")
    assert outcome.cookie and outcome.session
    [listed] = await iam.list_sessions(ada.email)
    assert (listed.client, listed.user_agent, listed.methods) == ("10.0.0.1", "UA", ("password",))
    await iam.revoke_session(None, listed.id)
    assert feed.revoked == [sha(outcome.cookie)]
    assert await iam.authenticate_session(outcome.cookie) is None
    with pytest.raises(SessionNotFound):
        await iam.revoke_session(None, listed.id)
    assert ("auth.session.revoke", f"session:{listed.id}", "success") in audit.actions()


async def test_changing_the_password_ends_other_sessions(iam: Iam) -> None:
    await iam.create_user(None, "ada@example.com", "Ada", PASSWORD)
    mine = await iam.login("ada@example.com", PASSWORD, client="c")
    other = await iam.login("ada@example.com", PASSWORD, client="c")
    assert mine.cookie and other.cookie
    me = await iam.authenticate_session(mine.cookie)
    await iam.set_password(me, "ada@example.com", "a new long passphrase")
    assert await iam.authenticate_session(mine.cookie) is not None
    assert await iam.authenticate_session(other.cookie) is None
    assert (await iam.login("ada@example.com", PASSWORD, client="c")).status == "failed"


async def test_totp_enrolment_login_replay_and_recovery_codes(
    iam: Iam, clock: FakeClock, audit: RecordingAudit
) -> None:
    verifier = TotpVerifier(clock)
    ada = await iam.create_user(None, "ada@example.com", "Ada", PASSWORD)
    secret, uri = await iam.begin_totp(ada.id)
    assert uri.startswith("otpauth://totp/") and "Courtyard" in uri
    with pytest.raises(TotpError):
        await iam.confirm_totp(
            ada.id,
            "000000" if verifier.code_at(secret, verifier.current_step()) != "000000" else "111111",
        )
    codes = await iam.confirm_totp(ada.id, verifier.code_at(secret, verifier.current_step()))
    assert len(codes) == 10 and (await iam.get_user(ada.id)).totp_enabled
    await clock.advance(30)
    step = await iam.login("ada@example.com", PASSWORD, client="c")
    assert step.status == "totp_required" and step.pending and step.cookie is None
    code = verifier.code_at(secret, verifier.current_step())
    done = await iam.login_totp(step.pending, code, client="c")
    assert done.status == "ok" and done.session and done.session.methods == ("password", "totp")
    assert done.cookie
    principal = await iam.authenticate_session(done.cookie)
    assert principal is not None and principal.auth == "password+totp"
    again = await iam.login("ada@example.com", PASSWORD, client="c")
    assert again.pending
    assert (await iam.login_totp(again.pending, code, client="c")).status == "failed"  # replay
    recovered = await iam.login_totp(again.pending, codes[0], client="c")
    assert recovered.status == "ok"
    third = await iam.login("ada@example.com", PASSWORD, client="c")
    assert third.pending
    assert (await iam.login_totp(third.pending, codes[0], client="c")).status == "failed"
    await clock.advance(301)
    assert (await iam.login_totp(third.pending, codes[1], client="c")).status == "failed"
    assert ("auth.mfa.enroll", f"user:{ada.id}", "success") in audit.actions()
    await iam.disable_totp(None, ada.id)
    assert (await iam.login("ada@example.com", PASSWORD, client="c")).status == "ok"


async def test_tokens_are_shown_once_scoped_expiring_and_revocable(
    iam: Iam, clock: FakeClock, audit: RecordingAudit
) -> None:
    feed = Feed()
    iam.subscribe(feed)
    ada = await iam.create_user(None, "ada@example.com", "Ada", PASSWORD)
    await iam.grant(None, "developer", f"user:{ada.id}", "notes")
    token, info = await iam.issue_token(None, ada.id, "laptop", scopes=["apps:read"], expires_in=60)
    assert token.startswith("cy_pat_") and info.owner == f"user:{ada.id}"
    assert all(token not in repr(e) for e in audit.events)
    principal = await iam.authenticate_token(token)
    assert principal is not None and principal.scopes == ("apps:read",)
    assert principal.claims("notes")["roles"] == ["developer"]
    assert feed.upserts[-1]["key"] == sha(token) and feed.upserts[-1]["scopes"] == ["apps:read"]
    assert await iam.authenticate_token(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert await iam.authenticate_token("nonsense") is None
    await clock.advance(61)
    assert await iam.authenticate_token(token) is None
    fresh, fresh_info = await iam.issue_token(None, ada.email, "ci", expires_in=None)
    await iam.revoke_token(None, fresh_info.id)
    assert await iam.authenticate_token(fresh) is None
    assert feed.revoked == [sha(fresh)]
    assert [t.name for t in await iam.list_tokens(ada.id)] == ["laptop", "ci"]


async def test_service_accounts_use_api_keys_with_their_roles(iam: Iam) -> None:
    svc = await iam.create_service_account(None, "deployer", "CI deployer")
    assert svc.id == "svc:deployer" and svc.kind == "service"
    await iam.grant(None, "owner", "service:deployer", "notes")
    key, info = await iam.issue_token(None, "svc:deployer", "ci")
    assert info.owner == "service:deployer"
    principal = await iam.authenticate_token(key)
    assert principal is not None and principal.claims("notes")["sub"] == "svc:deployer"
    assert principal.app_roles == {"notes": ("owner",)}
    assert [c["identity"]["sub"] for c in await iam.gateway_credentials()] == ["svc:deployer"]
    await iam.delete_service_account(None, "deployer")
    assert await iam.authenticate_token(key) is None


async def test_roles_through_groups_reach_claims_and_the_gateway(iam: Iam) -> None:
    feed = Feed()
    iam.subscribe(feed)
    ada = await iam.create_user(None, "ada@example.com", "Ada", PASSWORD)
    outcome = await iam.login("ada@example.com", PASSWORD, client="c")
    await iam.create_group(None, "ops", "Operations")
    await iam.grant(None, "auditor", "group:ops")
    await iam.grant(None, "viewer", "group:ops", "notes")
    with pytest.raises(InvalidRole):
        await iam.grant(None, "owner", "group:ops")
    with pytest.raises(InvalidRole):
        await iam.grant(None, "platform-admin", "group:ops", "notes")
    await iam.add_member(None, "ops", ada.email)
    assert feed.upserts[-1]["identity"]["groups"] == ["ops"]
    principal = await iam.principal_of(ada.id)
    assert principal.roles == ("auditor",) and principal.groups == ("ops",)
    assert principal.claims()["roles"] == ["auditor"]
    assert principal.claims("notes")["roles"] == ["auditor", "viewer"]
    [credential] = await iam.gateway_credentials()
    assert credential["kind"] == "session" and credential["app_roles"] == {"notes": ["viewer"]}
    assert outcome.cookie and credential["key"] == sha(outcome.cookie)
    await iam.delete_group(None, "ops")
    assert (await iam.principal_of(ada.email)).roles == ()


async def test_disabling_or_deleting_a_user_cuts_their_credentials(iam: Iam) -> None:
    feed = Feed()
    iam.subscribe(feed)
    ada = await iam.create_user(None, "ada@example.com", "Ada", PASSWORD)
    outcome = await iam.login("ada@example.com", PASSWORD, client="c")
    token, _ = await iam.issue_token(None, ada.id, "t")
    assert outcome.cookie
    await iam.update_user(None, ada.id, status="disabled")
    assert set(feed.revoked) == {sha(outcome.cookie), sha(token)}
    assert await iam.authenticate_token(token) is None
    assert (await iam.login("ada@example.com", PASSWORD, client="c")).status == "failed"
    # OAuth tokens resolve their subject through principal_of: it refuses a disabled user.
    with pytest.raises(UserDisabled):
        await iam.principal_of(ada.id)
    await iam.update_user(None, ada.id, status="active")
    assert (await iam.principal_of(ada.id)).id == ada.id
    assert await iam.authenticate_token(token) is not None
    await iam.delete_user(None, ada.id)
    assert await iam.authenticate_token(token) is None
    with pytest.raises(UserNotFound):
        await iam.get_user(ada.id)


async def test_bootstrap_creates_one_admin(iam: Iam) -> None:
    admin, generated = await bootstrap_admin(iam, "root@example.com", None)
    assert generated is not None and len(generated) >= 20
    assert (await iam.principal_of(admin.id)).is_admin
    assert (await iam.login("root@example.com", generated, client="c")).status == "ok"
    assert await bootstrap_admin(iam, "root@example.com", None) == (admin, None)
    with pytest.raises(AdminExists):
        await bootstrap_admin(iam, "other@example.com", PASSWORD)
