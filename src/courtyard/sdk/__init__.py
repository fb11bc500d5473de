"""What an app running on Courtyard imports: who is calling (the verified ``Courtyard-Identity``
assertion), for ASGI and WSGI apps; calls to other apps and events through the mesh;
``courtyard.sdk.testing`` mints assertions and fakes the mesh for app tests.

Builds on ``courtyard.contracts`` alone, so it works in any app's process. Errors::

    SdkError
    ├── IdentityError
    │   ├── MissingIdentity   no assertion on the request
    │   ├── InvalidIdentity   an assertion that may not be trusted (.reason)
    │   └── JwksUnavailable   the platform's keys could not be fetched (.url, .reason)
    └── MeshError             a mesh call or publish failed (.status, .title, .detail, .response)
        └── InvalidEvent      a delivered body that is not a CloudEvents 1.0 JSON document
"""

from courtyard.sdk._asgi import IdentityMiddleware, scope_identity
from courtyard.sdk._errors import (
    IdentityError,
    InvalidIdentity,
    JwksUnavailable,
    MissingIdentity,
    SdkError,
)
from courtyard.sdk._events import (
    CLOUDEVENTS_JSON,
    DEFAULT_EVENTS_IDENTITY,
    CloudEvent,
    EventHandler,
    EventWSGIHandler,
    InvalidEvent,
    event_handler,
)
from courtyard.sdk._identity import Identity
from courtyard.sdk._jwks import JwksCache, JwksSource, StaticJwks, VerificationKey
from courtyard.sdk._mesh import AsyncMeshClient, CredentialFile, MeshClient, MeshError
from courtyard.sdk._tracing import (
    SpanContext,
    SpanExporter,
    TracingMiddleware,
    TracingWSGI,
    current_span,
    exporter_from_env,
)
from courtyard.sdk._verifier import ALGORITHMS, IdentityVerifier, from_environment
from courtyard.sdk._wsgi import IdentityWSGIMiddleware, wsgi_identity

__all__ = [
    "ALGORITHMS",
    "CLOUDEVENTS_JSON",
    "DEFAULT_EVENTS_IDENTITY",
    "AsyncMeshClient",
    "CloudEvent",
    "CredentialFile",
    "EventHandler",
    "EventWSGIHandler",
    "Identity",
    "IdentityError",
    "IdentityMiddleware",
    "IdentityVerifier",
    "IdentityWSGIMiddleware",
    "InvalidEvent",
    "InvalidIdentity",
    "JwksCache",
    "JwksSource",
    "JwksUnavailable",
    "MeshClient",
    "MeshError",
    "MissingIdentity",
    "SdkError",
    "SpanContext",
    "SpanExporter",
    "StaticJwks",
    "TracingMiddleware",
    "TracingWSGI",
    "VerificationKey",
    "current_span",
    "event_handler",
    "exporter_from_env",
    "from_environment",
    "scope_identity",
    "wsgi_identity",
]
