"""The node writes its changes and denials to the audit trail, which survives SIGKILL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import write_app

pytestmark = pytest.mark.slow


def test_deploys_and_denials_are_audited_and_the_trail_verifies_after_sigkill(
    node_factory: Any, tmp_path: Path
) -> None:
    node = node_factory().start()
    node.cli("deploy", str(write_app(tmp_path / "a", "audited")))
    denied = httpx.get(f"{node.url}/api/v1/apps", headers={"Authorization": "Bearer wrong"})
    assert denied.status_code == 401
    node.kill()
    node.start()

    listing = json.loads(node.cli("audit", "list", "--json").stdout)
    entries = listing["entries"] if isinstance(listing, dict) else listing
    actions = [(e["action"], e["target"], e["outcome"]) for e in entries]
    assert any(a == "node.start" and o == "success" for a, _, o in actions)
    assert ("app.deploy", "app/audited", "success") in actions
    assert ("app.rollout", "app/audited", "success") in actions
    assert any(a == "access.deny" and o == "denied" for a, _, o in actions)
    assert "wrong" not in json.dumps(entries)

    verified = node.cli("audit", "verify")
    assert verified.returncode == 0, verified.stderr
    export = tmp_path / "trail.jsonl"
    node.cli("audit", "export", "--output", str(export))
    offline = node.cli("audit", "verify", "--from-export", str(export))
    assert offline.returncode == 0
