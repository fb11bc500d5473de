"""Interoperability in the default tier: Authlib's OAuth2Client, a widely used Python relying
party, does the authorization code flow with PKCE (RFC 7636, S256) against a started node.

The browser side (the sign-in form) is driven with httpx; the ID token is checked with
joserfc against the node's JWKS, as any relying party would (OIDC Core 3.1.3.7).
"""

from __future__ import annotations

import secrets
import warnings
from pathlib import Path

import httpx
import pytest
from authlib.integrations.base_client.errors import OAuthError
from harness import write_app
from joserfc import jwt
from joserfc.jwk import KeySet

from interop.sso_testkit import (
    Browserless,
    create_user,
    follow_to,
    register_client,
    running_node,
)

# Recent Authlib warns when it falls back from httpx2 to httpx: Authlib's own deprecation,
# which pytest would turn into an error. authlib.deprecate installs an "always" filter when
# imported, so it comes first and the "ignore" goes in front of it.
with warnings.catch_warnings():
    from authlib.deprecate import AuthlibDeprecationWarning

    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import OAuth2Client

pytestmark = pytest.mark.slow

REDIRECT_URI = "http://127.0.0.1:9/authlib/callback"


def test_authlib_code_flow_with_pkce(tmp_path: Path) -> None:
    with running_node(tmp_path / "node") as node:
        node.cli("deploy", str(write_app(tmp_path / "src" / "authlib", "authlib")))
        person = create_user(node, "abel@example.com", "Abel Authlib")
        client_id, client_secret = register_client(
            node,
            app="authlib",
            name="authlib web",
            redirect_uris=(REDIRECT_URI,),
            scopes=("openid", "profile", "email", "offline_access"),
        )
        metadata = httpx.get(f"{node.url}/.well-known/openid-configuration", timeout=10).json()
        jwks = KeySet.import_key_set(httpx.get(metadata["jwks_uri"], timeout=10).json())

        with OAuth2Client(
            client_id,
            client_secret,
            scope="openid profile email offline_access",
            redirect_uri=REDIRECT_URI,
            code_challenge_method="S256",
            timeout=30,
        ) as oauth:
            verifier = secrets.token_urlsafe(48)
            nonce = secrets.token_urlsafe(16)
            url, state = oauth.create_authorization_url(
                metadata["authorization_endpoint"], code_verifier=verifier, nonce=nonce
            )

            with Browserless(node.url) as browser:
                # No session: the provider sends the browser to sign in first.
                first = browser.http.get(url)
                assert first.status_code in {302, 303}, first.text[:500]
                login_url = httpx.URL(node.url).join(first.headers["location"])
                assert login_url.path == "/login"
                next_path = login_url.params["next"]
                assert next_path.startswith("/oauth2/authorize?")
                browser.sign_in_fully(person, next_path=next_path)
                callback = follow_to(browser.http, f"{node.url}{next_path}", REDIRECT_URI)

            assert httpx.URL(callback).params["state"] == state
            token = oauth.fetch_token(
                metadata["token_endpoint"],
                authorization_response=callback,
                code_verifier=verifier,
            )
            assert token["token_type"].lower() == "bearer"

            id_token = jwt.decode(token["id_token"], jwks, algorithms=["ES256", "RS256"])
            jwt.JWTClaimsRegistry(
                iss={"essential": True, "value": metadata["issuer"]},
                aud={"essential": True, "value": client_id},
                nonce={"essential": True, "value": nonce},
                sub={"essential": True, "value": person.id},
                exp={"essential": True},
                iat={"essential": True},
            ).validate(id_token.claims)
            assert id_token.claims["email"] == person.email

            userinfo = oauth.get(metadata["userinfo_endpoint"])
            assert userinfo.status_code == 200, userinfo.text
            assert userinfo.json()["sub"] == person.id
            assert userinfo.json()["name"] == person.name

            renewed = oauth.refresh_token(metadata["token_endpoint"])
            assert renewed["access_token"] != token["access_token"]

            # The code is single use (RFC 6749 §4.1.2): a replay gets invalid_grant, and every
            # token issued from it is revoked (RFC 9700 §4.5.3), the rotated ones included.
            replay = httpx.post(
                metadata["token_endpoint"],
                data={
                    "grant_type": "authorization_code",
                    "code": httpx.URL(callback).params["code"],
                    "redirect_uri": REDIRECT_URI,
                    "code_verifier": verifier,
                },
                auth=(client_id, client_secret or ""),
                timeout=10,
            )
            assert replay.status_code == 400, replay.text
            assert replay.json()["error"] == "invalid_grant"
            with pytest.raises(OAuthError, match="invalid_grant"):
                oauth.refresh_token(metadata["token_endpoint"])


def test_authorize_refuses_a_wrong_pkce_verifier(tmp_path: Path) -> None:
    with running_node(tmp_path / "node") as node:
        node.cli("deploy", str(write_app(tmp_path / "src" / "authlib", "authlib")))
        person = create_user(node, "pia@example.com", "Pia Pkce")
        client_id, client_secret = register_client(
            node, app="authlib", name="pkce", redirect_uris=(REDIRECT_URI,)
        )
        metadata = httpx.get(f"{node.url}/.well-known/openid-configuration", timeout=10).json()
        with OAuth2Client(
            client_id,
            client_secret,
            scope="openid",
            redirect_uri=REDIRECT_URI,
            code_challenge_method="S256",
            timeout=30,
        ) as oauth:
            verifier = secrets.token_urlsafe(48)
            url, _ = oauth.create_authorization_url(
                metadata["authorization_endpoint"], code_verifier=verifier
            )
            with Browserless(node.url) as browser:
                browser.sign_in_fully(person)
                callback = follow_to(browser.http, url, REDIRECT_URI)
            response = httpx.post(
                metadata["token_endpoint"],
                data={
                    "grant_type": "authorization_code",
                    "code": httpx.URL(callback).params["code"],
                    "redirect_uri": REDIRECT_URI,
                    "code_verifier": secrets.token_urlsafe(48),  # not the one hashed
                },
                auth=(client_id, client_secret or ""),
                timeout=10,
            )
            assert response.status_code == 400, response.text
            assert response.json()["error"] == "invalid_grant"
