"""One behaviour for every IAM store: memory, SQLite and (integration) PostgreSQL."""

from __future__ import annotations

from dataclasses import replace

import pytest

from courtyard.iam import (
    DuplicateGroup,
    DuplicateServiceAccount,
    DuplicateUser,
    GroupNotFound,
    IamStore,
    RoleBinding,
    ServiceAccount,
    ServiceAccountNotFound,
    SessionNotFound,
    TokenNotFound,
    UserNotFound,
)
from courtyard.iam._models import SessionRecord, TokenRecord, UserRecord

NOW = 1_700_000_000.5


def user(user_id: str = "u_1", email: str = "ada@example.com") -> UserRecord:
    return UserRecord(user_id, email, "Ada", "active", NOW, NOW, password_hash="$argon2id$x")


def session(session_id: str = "s_1", user_id: str = "u_1", key: str = "k1") -> SessionRecord:
    return SessionRecord(
        session_id, key, user_id, NOW, NOW, NOW + 100, NOW + 10, "10.0.0.1", "ua", ("password",)
    )


def token(token_id: str = "t1", owner: str = "user:u_1", lookup: str = "l1") -> TokenRecord:
    return TokenRecord(token_id, owner, "ci", "h", lookup, ("read",), NOW, NOW + 50)


def test_users_round_trip_and_emails_are_unique(iam_store: IamStore) -> None:
    ada = replace(user(), recovery_codes=("a", "b"), totp_secret="S" * 32, totp_last_step=7)
    iam_store.add_user(ada)  # an import path: add_user stores every field
    assert iam_store.get_user("u_1") == ada
    assert iam_store.find_user("ada@example.com") == ada
    assert iam_store.find_user("bob@example.com") is None
    with pytest.raises(DuplicateUser):
        iam_store.add_user(user("u_2"))
    iam_store.add_user(user("u_2", "bob@example.com"))
    assert [u.email for u in iam_store.list_users()] == ["ada@example.com", "bob@example.com"]
    with pytest.raises(DuplicateUser):
        iam_store.put_user(replace(ada, id="u_2"))
    iam_store.put_user(replace(ada, name="Ada L."))
    assert iam_store.get_user("u_1").name == "Ada L."
    with pytest.raises(UserNotFound):
        iam_store.get_user("u_9")
    with pytest.raises(UserNotFound):
        iam_store.put_user(user("u_9", "x@example.com"))


def test_a_totp_step_and_a_recovery_code_are_spent_once(iam_store: IamStore) -> None:
    iam_store.add_user(replace(user(), recovery_codes=("a", "b")))
    assert iam_store.use_totp_step("u_1", 10)
    assert not iam_store.use_totp_step("u_1", 10)
    assert not iam_store.use_totp_step("u_1", 9)
    assert iam_store.use_totp_step("u_1", 11)
    assert iam_store.spend_recovery_code("u_1", ("a", "b"), ("b",))
    assert not iam_store.spend_recovery_code("u_1", ("a", "b"), ("b",))
    assert iam_store.get_user("u_1").recovery_codes == ("b",)


def test_profile_writes_never_roll_back_the_second_factor(iam_store: IamStore) -> None:
    iam_store.add_user(user())
    stale = iam_store.get_user("u_1")
    iam_store.set_totp("u_1", "S" * 32, 5, ("h1", "h2"))
    iam_store.use_totp_step("u_1", 6)
    iam_store.put_user(replace(stale, name="Ada L.", totp_pending="P" * 32))
    current = iam_store.get_user("u_1")
    assert (current.name, current.totp_pending) == ("Ada L.", "P" * 32)
    assert (current.totp_secret, current.totp_last_step) == ("S" * 32, 6)
    assert current.recovery_codes == ("h1", "h2")
    iam_store.set_totp("u_1", None, None, ())
    cleared = iam_store.get_user("u_1")
    assert (cleared.totp_secret, cleared.totp_pending, cleared.recovery_codes) == (None, None, ())
    with pytest.raises(UserNotFound):
        iam_store.set_totp("u_9", None, None, ())


def test_groups_members_and_bindings(iam_store: IamStore) -> None:
    iam_store.add_user(user())
    iam_store.add_group("ops", "Operations", NOW)
    with pytest.raises(DuplicateGroup):
        iam_store.add_group("ops", "", NOW)
    assert iam_store.set_member("ops", "u_1", True).members == ("u_1",)
    assert iam_store.set_member("ops", "u_1", True).members == ("u_1",)
    assert iam_store.groups_of("u_1") == ["ops"]
    with pytest.raises(UserNotFound):
        iam_store.set_member("ops", "u_9", True)
    with pytest.raises(GroupNotFound):
        iam_store.set_member("dev", "u_1", True)
    admin = RoleBinding("platform-admin", "group:ops")
    viewer = RoleBinding("viewer", "user:u_1", "notes")
    assert iam_store.add_binding(admin, NOW)
    assert not iam_store.add_binding(admin, NOW)
    assert iam_store.add_binding(viewer, NOW)
    assert iam_store.list_bindings() == [admin, viewer]
    assert iam_store.list_bindings(app="") == [admin]
    assert iam_store.list_bindings(subjects=["user:u_1"]) == [viewer]
    assert iam_store.list_groups()[0].members == ("u_1",)
    iam_store.delete_group("ops")
    assert iam_store.list_bindings() == [viewer]
    assert iam_store.groups_of("u_1") == []
    with pytest.raises(GroupNotFound):
        iam_store.delete_group("ops")
    assert iam_store.remove_binding(viewer)
    assert not iam_store.remove_binding(viewer)


def test_service_accounts_take_their_bindings_and_tokens_along(iam_store: IamStore) -> None:
    account = ServiceAccount("ci", "CI", NOW)
    iam_store.add_service(account)
    with pytest.raises(DuplicateServiceAccount):
        iam_store.add_service(account)
    assert iam_store.get_service("ci") == account
    iam_store.add_binding(RoleBinding("developer", "service:ci", "notes"), NOW)
    iam_store.add_token(token(owner="service:ci"))
    iam_store.delete_service("ci")
    assert iam_store.list_services() == []
    assert iam_store.list_bindings() == []
    assert iam_store.list_tokens() == []
    with pytest.raises(ServiceAccountNotFound):
        iam_store.get_service("ci")


def test_sessions_revoke_touch_and_purge(iam_store: IamStore) -> None:
    iam_store.add_user(user())
    iam_store.add_session(session())
    iam_store.add_session(session("s_2", key="k2"))
    assert [s.id for s in iam_store.sessions_by_keys(["k2", "zz"])] == ["s_2"]
    assert [s.id for s in iam_store.list_sessions("u_1")] == ["s_1", "s_2"]
    iam_store.touch_sessions({"s_1": (NOW + 5, NOW + 15)})
    touched = iam_store.get_session("s_1")
    assert (touched.last_seen, touched.idle_expires_at) == (NOW + 5, NOW + 15)
    assert [s.id for s in iam_store.revoke_sessions(["s_1", "s_9"], NOW + 1)] == ["s_1"]
    assert iam_store.revoke_sessions(["s_1"], NOW + 2) == []
    assert iam_store.get_session("s_1").revoked_at == NOW + 1
    assert [s.id for s in iam_store.list_sessions()] == ["s_2"]
    assert iam_store.purge_sessions(NOW + 2) == 1
    with pytest.raises(SessionNotFound):
        iam_store.get_session("s_1")


def test_tokens_revoke_and_touch(iam_store: IamStore) -> None:
    iam_store.add_token(token())
    assert iam_store.get_token("t1") == token()
    assert iam_store.tokens_by_lookup(["l1"]) == [token()]
    iam_store.touch_tokens({"t1": NOW + 3})
    assert iam_store.get_token("t1").last_used_at == NOW + 3
    assert iam_store.revoke_token("t1", NOW + 4).revoked_at == NOW + 4
    assert iam_store.revoke_token("t1", NOW + 9).revoked_at == NOW + 4
    assert iam_store.list_tokens("user:u_1")[0].revoked_at == NOW + 4
    with pytest.raises(TokenNotFound):
        iam_store.revoke_token("t9", NOW)


def test_deleting_a_user_deletes_what_hangs_off_it(iam_store: IamStore) -> None:
    iam_store.add_user(user())
    iam_store.add_group("ops", "", NOW)
    iam_store.set_member("ops", "u_1", True)
    iam_store.add_binding(RoleBinding("auditor", "user:u_1"), NOW)
    iam_store.add_session(session())
    iam_store.add_token(token())
    iam_store.delete_user("u_1")
    assert iam_store.list_users() == []
    assert iam_store.get_group("ops").members == ()
    assert iam_store.list_bindings() == []
    assert iam_store.list_sessions() == []
    assert iam_store.list_tokens() == []
    with pytest.raises(UserNotFound):
        iam_store.delete_user("u_1")
