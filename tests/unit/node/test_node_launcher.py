"""What the launcher lists: routed apps of the catalog, their first route and who may open them."""

from __future__ import annotations

from courtyard.catalog import Catalog, MemoryCatalogStore, parse_manifest
from courtyard.contracts import AccessPolicy
from courtyard.node._launcher import launcher_apps

NOTES = """\
apiVersion: courtyard.dev/v1alpha1
kind: Application
metadata: {name: notes, title: Notes, owner: team-ops, businessOwner: o@example.com}
spec:
  stage: production
  run: {command: ["python", "app.py"]}
  routes: [{path: /apps/notes/}, {path: /apps/notes-v2/}]
  access: {allow: ["group:ops", "user:dana@example.com"]}
"""
WIKI = """\
apiVersion: courtyard.dev/v1alpha1
kind: Application
metadata: {name: wiki, owner: team-docs, businessOwner: d@example.com}
spec:
  run: {command: ["python", "app.py"]}
  routes: [{host: wiki.example.com, path: /}]
  access: {public: true}
"""
WORKER = """\
apiVersion: courtyard.dev/v1alpha1
kind: Application
metadata: {name: worker, owner: team-ops, businessOwner: o@example.com}
spec:
  run: {command: ["python", "worker.py"]}
  routes: []
"""


async def test_routed_apps_with_their_url_and_access() -> None:
    catalog = Catalog(MemoryCatalogStore())
    for text in (WORKER, WIKI, NOTES):
        await catalog.register(parse_manifest(text))

    apps = await launcher_apps(catalog)

    assert [app.name for app in apps] == ["notes", "wiki"]  # the worker has no route
    notes, wiki = apps
    assert (notes.title, notes.owner, notes.stage) == ("Notes", "team-ops", "production")
    assert notes.url == "/apps/notes/"  # the first route
    assert notes.access == AccessPolicy(public=False, allow=["group:ops", "user:dana@example.com"])
    assert wiki.url == "//wiki.example.com/"
    assert wiki.access == AccessPolicy(public=True, allow=[])
    assert wiki.owner == "team-docs" and wiki.title


async def test_an_empty_catalog_lists_nothing() -> None:
    assert await launcher_apps(Catalog(MemoryCatalogStore())) == []
