"""The composition root: builds every service from one frozen config and runs them together.

Error tree::

    NodeError
    ├── ConfigInvalid
    └── NodeStartFailed
"""

from courtyard.node._config import NodeConfig, load_config
from courtyard.node._controlplane import build_api
from courtyard.node._errors import ConfigInvalid, NodeError, NodeStartFailed
from courtyard.node._node import Node, NodeInfo, init_node, read_node_info

__all__ = [
    "ConfigInvalid",
    "Node",
    "NodeConfig",
    "NodeError",
    "NodeInfo",
    "NodeStartFailed",
    "build_api",
    "init_node",
    "load_config",
    "read_node_info",
]
