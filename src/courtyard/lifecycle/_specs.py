"""Pure translations from catalog manifests to what the runtime and the gateway consume."""

from __future__ import annotations

from pathlib import Path

from courtyard.catalog import App, Manifest, Revision
from courtyard.contracts import (
    AccessPolicy,
    MeshAccept,
    MeshCall,
    MeshPolicy,
    Route,
    Subscription,
)
from courtyard.runtime import WorkloadSpec

DEFAULT_CONNECT_TIMEOUT = 2.0
DEFAULT_RESPONSE_TIMEOUT = 60.0


def workload_for(revision: Revision, bundle: Path | None) -> WorkloadSpec:
    """The runtime's view of one revision: what to run, how many, how to check it."""
    run = revision.manifest.spec.run
    if run is None:
        raise ValueError(f"{revision.app} has no run section")
    health = run.health
    return WorkloadSpec(
        app=revision.app,
        revision=revision.number,
        bundle=bundle,
        command=tuple(run.command),
        env=dict(run.env),
        replicas=run.replicas,
        health_path=None if health.tcp else health.path,
        health_interval=health.interval,
        health_timeout=health.timeout,
        failure_threshold=health.failure_threshold,
        ready_timeout=run.ready_timeout,
        drain_timeout=run.drain_timeout,
        memory_bytes=run.resources.memory,
        cpu_millis=run.resources.cpu,
    )


def routes_for(app: App, domain: str | None) -> list[Route]:
    """The gateway routes of one app: its manifest routes, and ``<name>.<domain>`` if set."""
    routes: list[Route] = [
        Route(
            app=app.name,
            path=route.path,
            host=route.host,
            strip_prefix=True,
            max_body_bytes=route.max_body_size,
            connect_timeout=DEFAULT_CONNECT_TIMEOUT,
            response_timeout=DEFAULT_RESPONSE_TIMEOUT,
        )
        for route in app.manifest.spec.routes
    ]
    if domain and routes:
        routes.append(
            Route(
                app=app.name,
                path="/",
                host=f"{app.name}.{domain}",
                strip_prefix=False,
                max_body_bytes=routes[0]["max_body_bytes"],
                connect_timeout=DEFAULT_CONNECT_TIMEOUT,
                response_timeout=DEFAULT_RESPONSE_TIMEOUT,
            )
        )
    return routes


def access_for(app: App) -> AccessPolicy:
    """Who may open ``app``, from its manifest's ``access`` section (default: nobody)."""
    access = app.manifest.spec.access
    return AccessPolicy(public=access.public, allow=list(access.allow))


def mesh_for(app: App) -> MeshPolicy:
    """``app``'s side of the mesh (see :func:`mesh_policy`)."""
    return mesh_policy(app.manifest)


def mesh_policy(manifest: Manifest) -> MeshPolicy:
    """An app's side of the mesh, from its manifest: the calls it declares, the callers it
    accepts (None: every caller that declares the call), its topics and subscriptions."""
    spec = manifest.spec
    accepts = None
    if spec.accepts is not None:
        accepts = [
            MeshAccept(caller=rule.from_, paths=list(rule.paths), methods=list(rule.methods))
            for rule in spec.accepts
        ]
    return MeshPolicy(
        consumes=[
            MeshCall(service=call.service, paths=list(call.paths), methods=list(call.methods))
            for call in spec.consumes
        ],
        accepts=accepts,
        publishes=list(spec.publishes),
        subscribes=[
            Subscription(topic=item.topic, handler=item.handler) for item in spec.subscribes
        ],
    )
