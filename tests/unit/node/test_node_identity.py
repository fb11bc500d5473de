"""The identity feed over the real IAM service and OpenID provider: what gateway workers are
told (whole table, upserts, revocations, revoked access tokens, keys), what their usage
reports do (session activity, audit entries) and when an answer waits for the workers."""

from __future__ import annotations

import hashlib
import logging

import pytest

from courtyard.contracts import AccessDenial, CredentialsMessage, GatewayAuth, UsageMessage
from courtyard.core import FakeClock
from courtyard.iam import Iam, OidcProvider
from courtyard.node._identity import IdentityFeed
from fakes import RecordingAudit

from .conftest import ISSUER, START, service_token, signed_in


def key_of(secret: str) -> str:
    """The gateway's key for a cookie or a whole API token: SHA-256 hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


class RecordingChannel:
    """A control channel: numbers every credentials message and says whether workers caught
    up (``applied`` is the highest seq they applied)."""

    def __init__(self) -> None:
        self.messages: list[CredentialsMessage] = []
        self.waits: list[tuple[int, float]] = []
        self.applied = 1_000_000

    def publish_credentials(self, message: CredentialsMessage) -> int:
        self.messages.append(message)
        return len(self.messages)

    async def wait_credentials(self, seq: int, timeout: float) -> bool:
        self.waits.append((seq, timeout))
        return seq <= self.applied


class RecordingAuthPublisher:
    def __init__(self) -> None:
        self.auths: list[GatewayAuth | None] = []
        self.syncs = 0

    def set_auth(self, auth: GatewayAuth | None) -> None:
        self.auths.append(auth)

    async def sync(self) -> None:
        self.syncs += 1


def new_feed(iam: Iam, oidc: OidcProvider, audit: RecordingAudit) -> IdentityFeed:
    feed = IdentityFeed(iam, oidc, audit, issuer=ISSUER, cookie_name=iam.config.cookie_name)
    iam.subscribe(feed.credentials_changed)
    oidc.on_revoked(feed.tokens_revoked)
    oidc.on_keys_changed(feed.keys_changed)
    return feed


async def bound_feed(
    iam: Iam, oidc: OidcProvider, audit: RecordingAudit
) -> tuple[IdentityFeed, RecordingChannel, RecordingAuthPublisher]:
    feed = new_feed(iam, oidc, audit)
    await feed.load()
    channel, publisher = RecordingChannel(), RecordingAuthPublisher()
    feed.bind(channel, publisher)
    return feed, channel, publisher


def denial(**changes: str | int) -> AccessDenial:
    base = AccessDenial(
        app="notes",
        status=403,
        reason="no allow rule admits u_1",
        subject="u_1",
        method="GET",
        path="/apps/notes/secret-page",
        request_id="r-1",
        client="203.0.113.9",
    )
    return AccessDenial(**{**base, **changes})  # type: ignore[typeddict-item]


def usage(used: list[str], denials: list[AccessDenial] | None = None) -> UsageMessage:
    return UsageMessage(type="usage", worker=0, used=used, denials=denials or [])


# -- the whole table ---------------------------------------------------------------------------


async def test_load_then_full_message_holds_every_live_credential(
    iam: Iam, oidc: OidcProvider, audit: RecordingAudit
) -> None:
    _, cookie = await signed_in(iam, "ann@example.com")
    pat, _ = await iam.issue_token(None, "ann@example.com", "laptop", scopes=["apps:read"])
    revoked_pat, revoked_info = await iam.issue_token(None, "ann@example.com", "old")
    await iam.revoke_token(None, revoked_info.id)
    await iam.create_service_account(None, "backup")
    api_key, _ = await iam.issue_token(None, "svc:backup", "nightly")
    _, ended = await signed_in(iam, "bob@example.com")
    await iam.logout(ended)
    client, secret, access = await service_token(oidc)
    jti = str((await oidc.access_claims(access) or {})["jti"])
    await oidc.revoke(
        {"token": access, "client_id": client.client_id, "client_secret": secret}, None
    )

    feed = new_feed(iam, oidc, audit)
    await feed.load()
    message = feed.full_message()

    assert message["type"] == "credentials" and message["full"] is True
    by_key = {c["key"]: c for c in message["upsert"]}
    assert set(by_key) == {key_of(cookie), key_of(pat), key_of(api_key)}
    assert by_key[key_of(cookie)]["kind"] == "session"
    assert by_key[key_of(cookie)]["identity"]["email"] == "ann@example.com"
    assert by_key[key_of(pat)]["scopes"] == ["apps:read"]
    assert by_key[key_of(api_key)]["identity"]["sub"] == "svc:backup"
    assert key_of(revoked_pat) not in by_key and key_of(ended) not in by_key
    assert message["revoke"] == [] and message["revoked_jti"] == [jti]
    for secret_value in (cookie, pat, api_key, access):
        assert secret_value not in str(message)  # only hashes reach the workers


async def test_changes_before_bind_update_the_table_without_sending(
    iam: Iam, oidc: OidcProvider, audit: RecordingAudit
) -> None:
    feed = new_feed(iam, oidc, audit)
    await feed.load()
    _, cookie = await signed_in(iam, "ann@example.com")
    assert [c["key"] for c in feed.full_message()["upsert"]] == [key_of(cookie)]
    assert feed.mark() == 0
    await feed.settle(0)  # nothing bound: nothing to wait for


# -- changes -----------------------------------------------------------------------------------


async def test_a_login_sends_an_upsert(iam: Iam, oidc: OidcProvider, audit: RecordingAudit) -> None:
    feed, channel, _ = await bound_feed(iam, oidc, audit)
    user_id, cookie = await signed_in(iam, "ann@example.com")

    message = channel.messages[-1]
    assert message["full"] is False and message["revoke"] == [] and message["revoked_jti"] == []
    [credential] = message["upsert"]
    assert credential["key"] == key_of(cookie) and credential["kind"] == "session"
    assert credential["identity"]["sub"] == user_id
    assert credential["expires_at"] == START + iam.config.session_absolute
    assert key_of(cookie) in {c["key"] for c in feed.full_message()["upsert"]}


async def test_a_revocation_sends_a_revoke_and_leaves_the_table(
    iam: Iam, oidc: OidcProvider, audit: RecordingAudit
) -> None:
    _, cookie = await signed_in(iam, "ann@example.com")
    pat, info = await iam.issue_token(None, "ann@example.com", "laptop")
    feed, channel, _ = await bound_feed(iam, oidc, audit)

    await iam.revoke_token(None, info.id)
    assert channel.messages[-1]["revoke"] == [key_of(pat)]
    assert channel.messages[-1]["upsert"] == []
    await iam.logout(cookie)
    assert channel.messages[-1]["revoke"] == [key_of(cookie)]
    assert feed.full_message()["upsert"] == []


async def test_disabling_a_user_revokes_their_credentials(
    iam: Iam, oidc: OidcProvider, audit: RecordingAudit
) -> None:
    user_id, cookie = await signed_in(iam, "ann@example.com")
    pat, _ = await iam.issue_token(None, user_id, "laptop")
    feed, channel, _ = await bound_feed(iam, oidc, audit)

    await iam.update_user(None, user_id, status="disabled")
    revoked = {key for message in channel.messages for key in message["revoke"]}
    assert {key_of(cookie), key_of(pat)} <= revoked
    assert feed.full_message()["upsert"] == []


async def test_a_revoked_access_token_is_sent_once(
    iam: Iam, oidc: OidcProvider, audit: RecordingAudit
) -> None:
    client, secret, access = await service_token(oidc)
    jti = str((await oidc.access_claims(access) or {})["jti"])
    feed, channel, _ = await bound_feed(iam, oidc, audit)
    form = {"token": access, "client_id": client.client_id, "client_secret": secret}

    await oidc.revoke(form, None)
    assert [m["revoked_jti"] for m in channel.messages] == [[jti]]
    assert channel.messages[0]["upsert"] == [] and channel.messages[0]["revoke"] == []
    feed.tokens_revoked([jti])  # already known: nothing new for the workers
    assert len(channel.messages) == 1
    assert feed.full_message()["revoked_jti"] == [jti]


async def test_a_key_change_republishes_the_gateway_auth(
    iam: Iam, oidc: OidcProvider, audit: RecordingAudit
) -> None:
    feed = new_feed(iam, oidc, audit)
    feed.keys_changed()  # before bind: nowhere to publish, and no error
    await feed.load()
    publisher = RecordingAuthPublisher()
    feed.bind(RecordingChannel(), publisher)
    first = publisher.auths[-1]
    assert first is not None and first["issuer"] == ISSUER
    assert first["session_cookie"] == iam.config.cookie_name
    assert publisher.syncs == 0

    await oidc.rotate_keys(None)  # publishes a next key: the JWKS grows
    await feed.aclose()

    assert len(publisher.auths) == 2 and publisher.syncs == 1
    latest = publisher.auths[-1]
    assert latest is not None
    assert len(latest["jwks"]["keys"]) > len(first["jwks"]["keys"])
    assert latest == feed.gateway_auth()


# -- usage reports -----------------------------------------------------------------------------


async def test_usage_touches_used_sessions_and_tokens(
    iam: Iam, oidc: OidcProvider, audit: RecordingAudit, clock: FakeClock
) -> None:
    user_id, cookie = await signed_in(iam, "ann@example.com")
    await signed_in(iam, "bob@example.com")
    pat, info = await iam.issue_token(None, user_id, "laptop")
    feed, _, _ = await bound_feed(iam, oidc, audit)
    await clock.advance(120)

    feed.usage(usage([key_of(cookie), key_of(pat), key_of("unknown")]))
    await feed.aclose()

    [session] = await iam.list_sessions(user_id)
    assert session.last_seen == START + 120
    assert session.idle_expires_at == START + 120 + iam.config.session_idle
    [bob_session] = await iam.list_sessions("bob@example.com")
    assert bob_session.last_seen == START  # not reported, not touched
    assert (await iam.get_token(info.id)).last_used_at == START + 120


async def test_denials_become_audit_entries_without_secrets(
    iam: Iam, oidc: OidcProvider, audit: RecordingAudit
) -> None:
    _, cookie = await signed_in(iam, "ann@example.com")
    feed, _, _ = await bound_feed(iam, oidc, audit)
    before = len(audit.events)

    feed.usage(
        usage(
            [],
            [
                denial(),
                denial(app="ledger", status=401, reason="expired", subject="-", request_id=""),
                denial(subject="svc:backup", reason="token not for this app (aud)"),
            ],
        )
    )
    await feed.aclose()

    events = audit.events[before:]
    assert [(e.action, e.target, e.outcome) for e in events] == [
        ("access.deny", "app:notes", "denied"),
        ("access.deny", "app:ledger", "denied"),
        ("access.deny", "app:notes", "denied"),
    ]
    user, anonymous, service = events
    assert user.reason == "no allow rule admits u_1"
    assert (user.actor.kind, user.actor.id) == ("user", "u_1")
    assert user.request_id == "r-1"
    assert user.details == {
        "status": 403,
        "method": "GET",
        "path": "/apps/notes/secret-page",
        "client": "203.0.113.9",
    }
    assert (anonymous.actor.kind, anonymous.actor.id) == ("user", "anonymous")
    assert anonymous.reason == "expired" and anonymous.request_id is None
    assert (service.actor.kind, service.actor.id) == ("service", "svc:backup")
    assert cookie not in str(events) and key_of(cookie) not in str(events)


async def test_an_empty_usage_report_does_nothing(
    iam: Iam, oidc: OidcProvider, audit: RecordingAudit
) -> None:
    feed, _, _ = await bound_feed(iam, oidc, audit)
    before = len(audit.events)
    feed.usage(usage([]))
    await feed.aclose()
    assert len(audit.events) == before


# -- mark and settle ---------------------------------------------------------------------------


async def test_settle_waits_only_for_what_was_sent_after_the_mark(
    iam: Iam, oidc: OidcProvider, audit: RecordingAudit
) -> None:
    feed, channel, _ = await bound_feed(iam, oidc, audit)
    mark = feed.mark()
    await feed.settle(mark)
    assert channel.waits == []  # nothing changed: no waiting

    await signed_in(iam, "ann@example.com")
    await feed.settle(mark, timeout=0.5)
    assert channel.waits == [(len(channel.messages), 0.5)]

    later = feed.mark()
    await feed.settle(later)
    assert len(channel.waits) == 1  # the change before this mark is not waited for again


async def test_settle_warns_when_workers_lag(
    iam: Iam, oidc: OidcProvider, audit: RecordingAudit, caplog: pytest.LogCaptureFixture
) -> None:
    feed, channel, _ = await bound_feed(iam, oidc, audit)
    channel.applied = 0  # the workers never catch up
    mark = feed.mark()
    await signed_in(iam, "ann@example.com")
    with caplog.at_level(logging.WARNING, logger="courtyard.node"):
        await feed.settle(mark)
    assert "did not apply credentials" in caplog.text
