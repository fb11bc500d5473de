"""The access gate's pure parts: header spellings, cookies, bearer tokens, JWT checks, the
policy decision per request, assertions and their cache, usage reports."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import gateway_testkit as kit
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from courtyard.contracts import AccessPolicy, GatewayAuth
from courtyard.gateway import InvalidSnapshot, check_snapshot
from courtyard.gateway._access import (
    FORBIDDEN,
    FORWARD,
    INVALID,
    LOGIN,
    UNAUTHENTICATED,
    UNCONFIGURED,
    AccessGate,
    bearer_token,
    login_location,
    split_cookie,
)
from courtyard.gateway._assertions import AssertionSigner
from courtyard.gateway._credentials import Caller, CredentialTable
from courtyard.gateway._exchange import Exchange
from courtyard.gateway._headers import DROP, request_kind
from courtyard.gateway._tokens import TokenVerifier
from courtyard.gateway._usage import MAX_DENIALS, UsageLog

NOW = 1_800_000_000.0
KEYS = kit.Keys()
AUTH = KEYS.auth()
FINANCE = AccessPolicy(public=False, allow=["group:finance"])
PUBLIC = AccessPolicy(public=True, allow=[])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# -- header hygiene ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        b"Courtyard-Identity",
        b"COURTYARD-IDENTITY",
        b"courtyard_identity",
        b"Courtyard_Identity",
        b"X_Forwarded-For",
        b"x-forwarded_proto",
        b"X_REQUEST_ID",
    ],
)
def test_gateway_set_fields_are_dropped_in_every_spelling(name: bytes) -> None:
    assert request_kind(name) == DROP


def test_ordinary_fields_with_underscores_are_forwarded() -> None:
    assert request_kind(b"X_Custom_Thing") is None


@pytest.mark.parametrize(
    ("cookie", "session", "rest"),
    [
        (b"a=1; courtyard_session=s3; b=2", b"s3", b"a=1; b=2"),
        (b"courtyard_session=s3", b"s3", b""),
        (b"a=1", None, b"a=1"),
        (b"xcourtyard_session=1; a=2", None, b"xcourtyard_session=1; a=2"),
        (b"courtyard_session=one;courtyard_session=two; c=3", b"one", b"c=3"),
    ],
)
def test_split_cookie_removes_the_session_and_keeps_the_rest(
    cookie: bytes, session: bytes | None, rest: bytes
) -> None:
    assert split_cookie(cookie, b"courtyard_session") == (session, rest)


def test_bearer_token_scheme_is_case_insensitive() -> None:
    assert bearer_token(b"bearer abc") == b"abc"
    assert bearer_token(b"Bearer  abc ") == b"abc"
    assert bearer_token(b"Basic Zm9v") is None
    assert bearer_token(b"Bearer") is None


def test_login_location_percent_encodes_next() -> None:
    assert login_location("/login", b"/apps/x/a b", b"?q=1&r=/x") == (
        b"/login?next=/apps/x/a%20b%3Fq%3D1%26r%3D/x"
    )
    assert login_location("/login?theme=dark", b"/a/", b"") == b"/login?theme=dark&next=/a/"


# -- access tokens -----------------------------------------------------------------------------


def _verify(token: str, app: str = "books", wall: float = NOW) -> Caller | str:
    verifier = TokenVerifier(AUTH)
    outcome = verifier.verify(token.encode())
    if isinstance(outcome, str):
        return outcome
    return verifier.check(outcome, app, wall, {"jti-revoked"}) or outcome


def test_a_valid_access_token_names_its_caller() -> None:
    caller = _verify(KEYS.access_token(now=NOW))
    assert isinstance(caller, Caller)
    assert caller.identity["sub"] == "u_00000000000000aa"
    assert caller.identity["groups"] == ["finance"]
    rsa = _verify(KEYS.access_token(now=NOW, key=KEYS.rsa))
    assert isinstance(rsa, Caller)


def test_alg_none_is_refused() -> None:
    header = _b64(json.dumps({"alg": "none", "typ": "at+jwt", "kid": KEYS.signing.kid}).encode())
    body = _b64(json.dumps({"iss": kit.ISSUER, "sub": "u_1", "exp": NOW + 60}).encode())
    assert _verify(f"{header}.{body}.") == "algorithm 'none' not allowed"


def test_hs256_signed_with_the_public_key_is_refused() -> None:
    # The classic key-confusion attack (RFC 8725 §2.1): HMAC keyed with the public JWK.
    secret = json.dumps(KEYS.signing.as_dict(private=False)).encode()
    header = _b64(json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": KEYS.signing.kid}).encode())
    body = _b64(
        json.dumps(
            {"iss": kit.ISSUER, "sub": "u_1", "aud": "courtyard", "exp": NOW + 60, "iat": NOW}
        ).encode()
    )
    signing_input = f"{header}.{body}".encode()
    signature = _b64(hmac.new(secret, signing_input, hashlib.sha256).digest())
    assert _verify(f"{header}.{body}.{signature}") == "algorithm 'HS256' not allowed"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"aud": ["other-app"]}, "token not for this app (aud)"),
        ({"exp": int(NOW) - 1}, "expired token"),
        ({"nbf": int(NOW) + 120}, "token not valid yet"),
        ({"iat": int(NOW) + 120}, "token not valid yet"),
        ({"iss": "https://evil.test"}, "wrong issuer"),
        ({"jti": "jti-revoked"}, "revoked token"),
        ({"jti": None}, "missing sub or jti"),
        ({"exp": None}, "missing or invalid exp, iat or nbf"),
    ],
)
def test_claims_are_checked(changes: dict[str, object], reason: str) -> None:
    assert _verify(KEYS.access_token(now=NOW, **changes)) == reason  # type: ignore[arg-type]


def test_small_clock_skew_is_tolerated_for_nbf_and_iat_only() -> None:
    assert isinstance(_verify(KEYS.access_token(now=NOW, nbf=int(NOW) + 20)), Caller)
    assert isinstance(_verify(KEYS.access_token(now=NOW, iat=int(NOW) + 20)), Caller)
    assert _verify(KEYS.access_token(now=NOW, exp=int(NOW))) == "expired token"


def test_the_app_name_is_an_audience_too() -> None:
    assert isinstance(_verify(KEYS.access_token(now=NOW, aud="books"), app="books"), Caller)
    assert _verify(KEYS.access_token(now=NOW, aud="books"), app="notes") == (
        "token not for this app (aud)"
    )


def test_unknown_kid_wrong_typ_and_bad_signature_are_refused() -> None:
    assert _verify(KEYS.access_token(now=NOW, key=KEYS.other)) == "unknown kid"
    assert _verify(KEYS.access_token(now=NOW, header={"typ": "JWT"})) == (
        "not an access token (typ)"
    )
    forged = KEYS.access_token(now=NOW, key=KEYS.other, header={"kid": KEYS.signing.kid})
    assert _verify(forged) == "bad signature"
    # An ES256 header over the RSA key's kid is refused before any signature check.
    swapped = KEYS.access_token(now=NOW, header={"kid": KEYS.rsa.kid})
    assert _verify(swapped) == "algorithm ES256 does not match the key"
    assert _verify("not.a.jwt") == "malformed token"


def test_verification_is_cached_per_token() -> None:
    verifier = TokenVerifier(AUTH)
    token = KEYS.access_token(now=NOW).encode()
    first = verifier.verify(token)
    assert verifier.verify(token) is first


# -- credentials -------------------------------------------------------------------------------


def test_credential_table_full_upsert_revoke_and_expiry() -> None:
    table = CredentialTable()
    table.apply(kit.credentials(kit.credential("a"), kit.credential("b"), full=True))
    assert len(table) == 2
    assert table.apply(kit.credentials(revoke=[kit.key_of("a")])) == {kit.key_of("a")}
    assert table.find(kit.key_of("a"), NOW) is None
    table.apply(kit.credentials(kit.credential("c", expires_at=NOW - 1)))
    assert table.find(kit.key_of("c"), NOW) == "expired session"
    table.apply(kit.credentials(kit.credential("d"), full=True, revoked_jti=["j"]))
    assert len(table) == 1 and table.revoked_jti == {"j"}


# -- the decision ------------------------------------------------------------------------------


def _gate(
    access: dict[str, AccessPolicy] | None = None, auth: GatewayAuth | None = AUTH
) -> AccessGate:
    gate = AccessGate()
    policies = access or {"books": FINANCE, "blog": PUBLIC}
    gate.apply_snapshot(
        kit.snapshot(1, [], {name: [] for name in policies}, access=policies, auth=auth)
    )
    gate.apply_credentials(
        kit.credentials(
            kit.credential("good", groups=["finance"]),
            kit.credential("outsider", sub="u_00000000000000cc"),
            kit.credential("old", expires_at=NOW - 1),
            kit.credential("cy_pat_tok", kind="token", groups=["finance"]),
            kit.credential("viewer", app_roles={"books": ["viewer"]}),
            full=True,
        )
    )
    return gate


def _ex(
    *,
    cookie: bytes | None = None,
    authorization: bytes | None = None,
    browser: bool = False,
    method: bytes = b"GET",
) -> Exchange:
    ex = Exchange(0.0)
    ex.method = method
    ex.path = b"/apps/books/"
    ex.request_id = b"r1"
    ex.cookie = cookie
    ex.authorization = authorization
    if browser:
        ex.accept = b"text/html,application/xhtml+xml,*/*;q=0.8"
    return ex


def test_session_admitted_by_a_group_rule_gets_an_assertion() -> None:
    gate = _gate()
    ex = _ex(cookie=b"theme=dark; courtyard_session=good")
    assert gate.check(ex, "books", NOW, b"10.0.0.1") == FORWARD
    assert ex.cookie_line == b"Cookie: theme=dark\r\n"
    assert ex.identity_line.startswith(b"Courtyard-Identity: ey")
    assert gate.usage.used == {kit.key_of("good")}


def test_no_credential_browser_is_redirected_api_gets_401() -> None:
    gate = _gate()
    assert gate.check(_ex(browser=True), "books", NOW, b"-") == LOGIN
    assert gate.check(_ex(browser=True, method=b"POST"), "books", NOW, b"-") == UNAUTHENTICATED
    assert gate.check(_ex(), "books", NOW, b"-") == UNAUTHENTICATED
    assert gate.usage.denials == []  # anonymous callers are no audit event


def test_invalid_credentials_are_401_and_reported() -> None:
    gate = _gate()
    assert gate.check(_ex(cookie=b"courtyard_session=old"), "books", NOW, b"-") == INVALID
    assert gate.check(_ex(cookie=b"courtyard_session=nope", browser=True), "books", NOW, b"-") == (
        LOGIN
    )
    assert gate.check(_ex(authorization=b"Bearer cy_pat_nope"), "books", NOW, b"-") == INVALID
    reasons = [denial["reason"] for denial in gate.usage.denials]
    assert reasons == ["expired session", "unknown session", "unknown token"]
    assert all(denial["status"] == 401 for denial in gate.usage.denials)
    text = json.dumps(gate.usage.denials)
    assert "old" not in text.replace("old session", "") and "cy_pat" not in text


def test_a_session_secret_is_no_api_token() -> None:
    gate = _gate()
    assert gate.check(_ex(authorization=b"Bearer good"), "books", NOW, b"-") == INVALID


def test_forbidden_names_the_rule_that_refused() -> None:
    gate = _gate()
    ex = _ex(cookie=b"courtyard_session=outsider")
    assert gate.check(ex, "books", NOW, b"10.0.0.9") == FORBIDDEN
    (denial,) = gate.usage.denials
    assert denial == {
        "app": "books",
        "status": 403,
        "reason": "no allow rule admits u_00000000000000cc (allow: group:finance)",
        "subject": "u_00000000000000cc",
        "method": "GET",
        "path": "/apps/books/",
        "request_id": "r1",
        "client": "10.0.0.9",
    }
    assert ex.identity_line == b""


def test_app_roles_admit_and_are_asserted() -> None:
    gate = _gate()
    ex = _ex(cookie=b"courtyard_session=viewer")
    assert gate.check(ex, "books", NOW, b"-") == FORWARD
    token = ex.identity_line.split(b": ", 1)[1].strip()
    claims = jwt.decode(token, KeySet.import_key_set(KEYS.jwks())).claims  # type: ignore[arg-type]
    assert claims["roles"] == ["viewer"]
    assert claims["aud"] == "books"


def test_public_apps_never_refuse_and_assert_when_they_can() -> None:
    gate = _gate()
    anonymous = _ex(cookie=b"courtyard_session=nope", authorization=b"Bearer cy_pat_nope")
    assert gate.check(anonymous, "blog", NOW, b"-") == FORWARD
    assert anonymous.identity_line == b"" and anonymous.auth_line == b""
    assert anonymous.cookie_line == b""
    known = _ex(cookie=b"courtyard_session=outsider")
    assert gate.check(known, "blog", NOW, b"-") == FORWARD
    assert known.identity_line != b""
    assert gate.usage.denials == []


def test_pat_and_jwt_bearers_authenticate_and_are_not_forwarded() -> None:
    gate = _gate()
    pat = _ex(authorization=b"Bearer cy_pat_tok")
    assert gate.check(pat, "books", NOW, b"-") == FORWARD
    assert pat.auth_line == b"" and pat.identity_line != b""
    token = KEYS.access_token(now=NOW).encode()
    bearer = _ex(authorization=b"Bearer " + token)
    assert gate.check(bearer, "books", NOW, b"-") == FORWARD
    assert bearer.auth_line == b""
    assert gate.usage.used == set()  # tokens have no idle timeout


def test_revoked_jti_takes_effect_at_once() -> None:
    gate = _gate()
    token = KEYS.access_token(now=NOW).encode()
    assert gate.check(_ex(authorization=b"Bearer " + token), "books", NOW, b"-") == FORWARD
    gate.apply_credentials(kit.credentials(revoked_jti=["jti-1"]))
    assert gate.check(_ex(authorization=b"Bearer " + token), "books", NOW, b"-") == INVALID


def test_foreign_bearer_tokens_reach_public_apps_only() -> None:
    gate = _gate()
    foreign = KEYS.access_token(now=NOW, key=KEYS.other).encode()
    ex = _ex(authorization=b"Bearer " + foreign)
    assert gate.check(ex, "blog", NOW, b"-") == FORWARD
    assert ex.auth_line == b"Authorization: Bearer " + foreign + b"\r\n"
    assert gate.check(_ex(authorization=b"Bearer " + foreign), "books", NOW, b"-") == INVALID
    basic = _ex(authorization=b"Basic Zm9vOmJhcg==", cookie=b"courtyard_session=good")
    assert gate.check(basic, "books", NOW, b"-") == FORWARD
    assert basic.auth_line == b"Authorization: Basic Zm9vOmJhcg==\r\n"


def test_control_plane_app_is_passed_through() -> None:
    gate = _gate({"courtyard": PUBLIC, "books": FINANCE})
    ex = _ex(cookie=b"courtyard_session=good", authorization=b"Bearer cy_pat_tok")
    assert gate.check(ex, "courtyard", NOW, b"-") == FORWARD
    assert ex.cookie_line == b"Cookie: courtyard_session=good\r\n"
    assert ex.auth_line == b"Authorization: Bearer cy_pat_tok\r\n"
    assert ex.identity_line == b""


def test_without_an_identity_provider_only_public_apps_are_served() -> None:
    gate = _gate(auth=None)
    assert gate.check(_ex(cookie=b"courtyard_session=good"), "books", NOW, b"-") == UNCONFIGURED
    assert gate.check(_ex(), "blog", NOW, b"-") == FORWARD


def test_policy_change_in_a_snapshot_applies_to_cached_callers() -> None:
    gate = _gate()
    assert gate.check(_ex(cookie=b"courtyard_session=outsider"), "books", NOW, b"-") == FORBIDDEN
    gate.apply_snapshot(
        kit.snapshot(
            2,
            [],
            {"books": []},
            access={"books": AccessPolicy(public=False, allow=["user:bob@example.com"])},
            auth=AUTH,
        )
    )
    assert gate.check(_ex(cookie=b"courtyard_session=outsider"), "books", NOW, b"-") == FORWARD


# -- assertions --------------------------------------------------------------------------------


def _caller(key: str = "k", expires_at: float = NOW + 3600) -> Caller:
    credential = kit.credential("x", groups=["finance"], expires_at=expires_at)
    credential["key"] = key
    return Caller.of(credential)


def test_assertion_claims_and_header() -> None:
    signer = AssertionSigner(KEYS.auth(ttl=30))
    line = signer.line(_caller(), "books", NOW)
    token = jwt.decode(line[len(b"Courtyard-Identity: ") : -2], KEYS.signing)
    assert token.header == {"alg": "ES256", "typ": "JWT", "kid": KEYS.signing.kid}
    assert token.claims == {
        "iss": kit.ISSUER,
        "aud": "books",
        "iat": int(NOW),
        "exp": int(NOW) + 30,
        "sub": "u_00000000000000bb",
        "email": "bob@example.com",
        "name": "Bob",
        "groups": ["finance"],
        "roles": [],
    }


def test_assertions_are_reused_for_half_their_life() -> None:
    signer = AssertionSigner(KEYS.auth(ttl=30))
    caller = _caller()
    first = signer.line(caller, "books", NOW)
    assert signer.line(caller, "books", NOW + 14) is first
    assert signer.line(caller, "notes", NOW) != first
    fresh = signer.line(caller, "books", NOW + 15)
    assert fresh != first
    signer.forget({"k"})
    assert signer.line(caller, "books", NOW + 16) != fresh


def test_an_assertion_never_outlives_its_credential() -> None:
    signer = AssertionSigner(KEYS.auth(ttl=60))
    line = signer.line(_caller(expires_at=NOW + 10), "books", NOW)
    claims = jwt.decode(line[len(b"Courtyard-Identity: ") : -2], KEYS.signing).claims
    assert claims["exp"] == int(NOW) + 10


def test_credential_change_drops_its_cached_assertion() -> None:
    gate = _gate()
    first = _ex(cookie=b"courtyard_session=good")
    gate.check(first, "books", NOW, b"-")
    again = _ex(cookie=b"courtyard_session=good")
    gate.check(again, "books", NOW, b"-")
    assert again.identity_line is first.identity_line
    gate.apply_credentials(kit.credentials(kit.credential("good", groups=["finance", "ops"])))
    changed = _ex(cookie=b"courtyard_session=good")
    gate.check(changed, "books", NOW, b"-")
    assert changed.identity_line != first.identity_line


# -- snapshots and usage -----------------------------------------------------------------------


def test_check_snapshot_validates_auth_and_access() -> None:
    good = kit.snapshot(1, [kit.route()], {"echo": []}, access={"echo": FINANCE}, auth=AUTH)
    assert check_snapshot(good) is good
    bad_key = dict(AUTH, signing_key=KEYS.signing.as_dict(private=False))
    with pytest.raises(InvalidSnapshot, match="signing_key"):
        check_snapshot(kit.snapshot(1, [], {}, auth=bad_key))  # type: ignore[arg-type]
    with pytest.raises(InvalidSnapshot, match="assertion_ttl"):
        check_snapshot(kit.snapshot(1, [], {}, auth=dict(AUTH, assertion_ttl=600)))  # type: ignore[arg-type]
    broken = kit.snapshot(1, [], {"echo": []})
    broken["apps"]["echo"]["access"] = {"public": "yes", "allow": []}  # type: ignore[typeddict-item]
    with pytest.raises(InvalidSnapshot, match=r"apps\.echo\.access"):
        check_snapshot(broken)


def test_usage_log_bounds_denials_and_resets() -> None:
    usage = UsageLog()
    assert usage.take(3) == (None, 0)
    usage.used.add("k")
    for index in range(MAX_DENIALS + 5):
        usage.deny(
            {
                "app": "a",
                "status": 403,
                "reason": str(index),
                "subject": "-",
                "method": "GET",
                "path": "/",
                "request_id": "r",
                "client": "c",
            }
        )
    message, dropped = usage.take(3)
    assert message is not None and dropped == 5
    assert message["worker"] == 3 and message["used"] == ["k"]
    assert len(message["denials"]) == MAX_DENIALS
    assert usage.take(3) == (None, 0)
