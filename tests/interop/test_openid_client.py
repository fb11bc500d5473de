"""Interoperability: a certified third-party relying party (openid-client v6, Node.js) signs
in through Courtyard's OIDC provider and uses every endpoint it advertises.

The client is tests/interop/oidc_client.mjs; scripts/install-extras installs its npm lockfile.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from harness import write_app

from interop.sso_testkit import create_user, register_client, running_node

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "oidc_client.mjs"
# Nothing listens here: the client reads the code off the redirect's Location.
REDIRECT_URI = "http://127.0.0.1:9/interop/callback"


def node_binary() -> str:
    """The ``node`` executable, or skip when the npm side of the tier is not installed."""
    binary = shutil.which("node")
    if binary is None:
        pytest.skip("node is not installed (scripts/install-extras)")
    if not (HERE / "node_modules" / "openid-client").is_dir():
        pytest.skip("tests/interop/node_modules is missing (scripts/install-extras runs npm ci)")
    return binary


def test_openid_client_runs_every_flow(tmp_path: Path) -> None:
    node_bin = node_binary()
    with running_node(tmp_path / "node") as node:
        node.cli("deploy", str(write_app(tmp_path / "src" / "interop", "interop")))
        person = create_user(node, "ines@example.com", "Ines Interop")
        web_id, web_secret = register_client(
            node,
            app="interop",
            name="openid-client web",
            redirect_uris=(REDIRECT_URI,),
            grant_types=("authorization_code", "refresh_token"),
            scopes=("openid", "profile", "email", "offline_access"),
        )
        service_id, service_secret = register_client(
            node,
            app="interop",
            name="openid-client service",
            grant_types=("client_credentials",),
        )
        assert web_secret and service_secret  # confidential clients get a secret, once
        config = {
            "issuer": node.url,
            "client": {"id": web_id, "secret": web_secret, "redirectUri": REDIRECT_URI},
            "service": {"id": service_id, "secret": service_secret},
            "user": {"email": person.email, "password": person.password},
        }
        run = subprocess.run(
            [node_bin, str(SCRIPT)],
            input=json.dumps(config),
            capture_output=True,
            text=True,
            timeout=120,
            cwd=HERE,
        )
        assert run.returncode == 0, f"{run.stderr}\n{run.stdout}\n--- node log ---\n{node.log()}"
        out: dict[str, Any] = json.loads(run.stdout)

    assert out["ok"] is True
    discovery = out["discovery"]
    assert discovery["issuer"].rstrip("/") == node.url.rstrip("/")
    assert "S256" in discovery["code_challenge_methods_supported"]
    assert {"ES256", "RS256"} <= set(discovery["id_token_signing_alg_values_supported"])
    assert discovery["introspection_endpoint"] and discovery["revocation_endpoint"]

    # openid-client already verified the ID token (signature via the JWKS, iss, aud, exp,
    # nonce) and the state; here the claims are the person's.
    grant = out["authorizationCodeGrant"]
    assert grant["token_type"].lower() == "bearer"
    assert grant["has_refresh_token"]
    id_token = grant["id_token"]
    assert id_token["sub"] == person.id
    assert web_id == id_token["aud"] or web_id in id_token["aud"]
    assert id_token["email"] == person.email
    assert id_token["name"] == person.name
    assert grant["id_token_header"]["alg"] in {"ES256", "RS256"}
    access = grant["access_token"]  # RFC 9068
    assert access["sub"] == person.id
    assert access["client_id"] == web_id
    assert "courtyard" in (access["aud"] if isinstance(access["aud"], list) else [access["aud"]])

    assert out["userinfo"]["sub"] == person.id
    assert out["userinfo"]["email"] == person.email

    refreshed = out["refreshTokenGrant"]
    assert refreshed["rotated"], "refresh tokens rotate on use (RFC 9700 §4.14.2)"
    assert refreshed["access_token"]["sub"] == person.id
    assert out["reusedRefreshToken"]["refused"]

    service = out["clientCredentialsGrant"]
    assert service["access_token"]["sub"] == f"svc:{service_id}"
    assert service["access_token"]["client_id"] == service_id
    assert not service["has_refresh_token"]  # RFC 6749 §4.4.3
    assert out["serviceIntrospection"]["active"] is True

    introspection = out["introspection"]
    assert introspection["active"] is True
    assert introspection["sub"] == person.id
    assert introspection["client_id"] == web_id
    assert out["introspectionAfterRevocation"]["active"] is False
    assert out["refreshAfterRevocation"]["refused"]
    assert out["refreshAfterRevocation"]["error"] == "invalid_grant"
