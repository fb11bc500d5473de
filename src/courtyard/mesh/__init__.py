"""The service mesh's control-plane side: workload identities for app instances, the durable
event bus, and the dependency graph. The mesh listener itself runs in the gateway workers
(courtyard.gateway), which get everything they need through the snapshot and credentials.
"""

__all__: list[str] = []
