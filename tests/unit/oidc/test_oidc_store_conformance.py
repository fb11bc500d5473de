"""One behaviour for every OIDC store: memory, SQLite and (integration) PostgreSQL."""

from __future__ import annotations

from dataclasses import replace

import pytest

from courtyard.iam._oidc_errors import ClientInvalid, ClientNotFound
from courtyard.iam._oidc_models import (
    ClientInfo,
    ClientRecord,
    CodeRecord,
    FamilyRecord,
    RefreshRecord,
)
from courtyard.iam._oidc_store import OidcStore

from .conftest import START, first_generation

CLIENT = ClientInfo(
    client_id="cl_1",
    app="notes",
    name="Notes",
    public=False,
    redirect_uris=("https://notes.example.com/cb",),
    post_logout_redirect_uris=(),
    grant_types=("authorization_code", "refresh_token"),
    scopes=("openid", "email"),
    audience=("courtyard",),
    id_token_alg="RS256",
    created_at=START,
)
CODE = CodeRecord(
    code_hash="c" * 64,
    client_id="cl_1",
    subject="u_1",
    session_id="s_1",
    redirect_uri="https://notes.example.com/cb",
    scope=("openid", "email"),
    nonce="n",
    code_challenge="x" * 43,
    auth_time=START - 5,
    expires_at=START + 60,
)


def family(
    id: str = "f1", jtis: tuple[tuple[str, float], ...] = (("j1", START + 600),)
) -> FamilyRecord:
    return FamilyRecord(id=id, client_id="cl_1", subject="u_1", created_at=START, access_jtis=jtis)


def refresh(hash: str, family_id: str = "f1") -> RefreshRecord:
    return RefreshRecord(
        token_hash=hash,
        family_id=family_id,
        client_id="cl_1",
        subject="u_1",
        scope=("openid", "email"),
        created_at=START,
        expires_at=START + 1000,
    )


def test_clients_round_trip(oidc_store: OidcStore) -> None:
    oidc_store.add_client(ClientRecord(CLIENT, "h" * 64))
    assert oidc_store.get_client("cl_1") == ClientRecord(CLIENT, "h" * 64)
    with pytest.raises(ClientInvalid):
        oidc_store.add_client(ClientRecord(CLIENT, None))
    later = replace(CLIENT, client_id="cl_0", created_at=START + 1, public=True)
    oidc_store.add_client(ClientRecord(later, None))
    assert [r.info.client_id for r in oidc_store.list_clients()] == ["cl_1", "cl_0"]
    assert oidc_store.set_client_secret("cl_1", "k" * 64).secret_hash == "k" * 64
    with pytest.raises(ClientNotFound):
        oidc_store.get_client("cl_9")
    with pytest.raises(ClientNotFound):
        oidc_store.set_client_secret("cl_9", "k" * 64)


def test_a_code_is_redeemed_once(oidc_store: OidcStore) -> None:
    oidc_store.add_code(CODE)
    assert oidc_store.get_code(CODE.code_hash) == CODE
    assert oidc_store.redeem_code(CODE.code_hash, START + 1, family(), refresh("r1"))
    assert not oidc_store.redeem_code(CODE.code_hash, START + 2, family("f2"), refresh("r2"))
    used = oidc_store.get_code(CODE.code_hash)
    assert used is not None and (used.used_at, used.family_id) == (START + 1, "f1")
    assert oidc_store.get_family("f2") is None and oidc_store.get_refresh("r2") is None
    assert oidc_store.get_family("f1") == family()
    assert oidc_store.get_refresh("r1") == refresh("r1")
    assert oidc_store.get_code("nope") is None


def test_a_refresh_token_rotates_once(oidc_store: OidcStore) -> None:
    oidc_store.add_code(CODE)
    oidc_store.redeem_code(CODE.code_hash, START, family(), refresh("r1"))
    assert oidc_store.rotate_refresh("r1", START + 5, refresh("r2"), ("j2", START + 605))
    assert not oidc_store.rotate_refresh("r1", START + 6, refresh("r3"), ("j3", START + 606))
    assert oidc_store.get_refresh("r3") is None
    first = oidc_store.get_refresh("r1")
    assert first is not None and first.used_at == START + 5
    stored = oidc_store.get_family("f1")
    assert stored is not None
    assert stored.access_jtis == (("j1", START + 600), ("j2", START + 605))
    assert not oidc_store.rotate_refresh("missing", START, None, ("j4", START))


def test_revoking_a_family_revokes_its_tokens_once(oidc_store: OidcStore) -> None:
    oidc_store.add_code(CODE)
    jtis = (("j0", START - 1), ("j1", START + 600))
    oidc_store.redeem_code(CODE.code_hash, START, family(jtis=jtis), refresh("r1"))
    assert oidc_store.revoke_family("f1", START) == [("j1", START + 600)]
    assert oidc_store.revoke_family("f1", START + 1) == []
    assert oidc_store.revoke_family("nope", START) == []
    token = oidc_store.get_refresh("r1")
    assert token is not None and token.revoked_at == START
    assert not oidc_store.rotate_refresh("r1", START + 2, refresh("r2"), ("j2", START + 600))
    assert oidc_store.is_revoked("j1") and not oidc_store.is_revoked("j0")
    assert oidc_store.revoked_jtis(START) == [("j1", START + 600)]


def test_revoked_jtis_expire_and_purge(oidc_store: OidcStore) -> None:
    oidc_store.revoke_jtis([("a", START + 10), ("b", START + 20)])
    oidc_store.revoke_jtis([("a", START + 10)])  # idempotent
    assert oidc_store.revoked_jtis(START + 15) == [("b", START + 20)]
    oidc_store.add_code(CODE)
    oidc_store.redeem_code(CODE.code_hash, START, family(), refresh("r1"))
    assert oidc_store.purge(START + 15, grace=100) == 1
    assert oidc_store.get_code(CODE.code_hash) is not None
    assert oidc_store.purge(START + 2000, grace=100) == 4  # b, code, refresh, family
    assert oidc_store.get_family("f1") is None and oidc_store.get_code(CODE.code_hash) is None


def test_deleting_a_client_revokes_and_forgets_its_grants(oidc_store: OidcStore) -> None:
    oidc_store.add_client(ClientRecord(CLIENT, "h" * 64))
    oidc_store.add_code(CODE)
    oidc_store.redeem_code(CODE.code_hash, START, family(), refresh("r1"))
    assert oidc_store.delete_client("cl_1", START) == [("j1", START + 600)]
    assert oidc_store.is_revoked("j1")
    assert oidc_store.get_refresh("r1") is None and oidc_store.get_code(CODE.code_hash) is None
    with pytest.raises(ClientNotFound):
        oidc_store.delete_client("cl_1", START)


def test_signing_keys_round_trip(oidc_store: OidcStore) -> None:
    key = first_generation()
    oidc_store.save_keys([key], [])
    assert oidc_store.load_keys() == [key]
    retired = replace(key, state="retired", retired_at=START)
    oidc_store.save_keys([retired], [])
    assert oidc_store.load_keys() == [retired]
    oidc_store.save_keys([], [key.id])
    assert oidc_store.load_keys() == []
