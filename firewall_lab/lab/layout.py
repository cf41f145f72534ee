"""Names, addresses and paths of one lab: pure data, no I/O.

Every lab has a short id; its network namespaces are ``pwl<id>-lab`` (the
underlay bridge and the API address), ``pwl<id>-<node>`` and ``pwl<id>-p<n>``
(pods).  Addresses repeat between labs on purpose: they live in the lab's own
namespaces, never in the machine's.

Address plan: underlay ``10.243.0.0/24`` (+ ``fd00:243::/64``), the API at
``.254`` in the lab namespace, node ``i`` (1-based) at ``.10+i``; pod CIDR of
node ``i``: ``10.244.i.0/24`` (+ ``fd00:244:i::/64``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

PREFIX = "pwl"
UNDERLAY4 = "10.243.0"
UNDERLAY6 = "fd00:243::"
API_IP = f"{UNDERLAY4}.254"
BRIDGE = "ul0"
NODE_LINK = "ul0"
CNIS = ("bridge", "ptp")


@dataclass(frozen=True, slots=True)
class Node:
    """One node of a lab (``index`` from 1)."""

    lab_id: str
    index: int
    name: str

    @property
    def netns(self) -> str:
        return f"{PREFIX}{self.lab_id}-{self.name}"

    @property
    def ip4(self) -> str:
        return f"{UNDERLAY4}.{10 + self.index}"

    @property
    def ip6(self) -> str:
        return f"{UNDERLAY6}{10 + self.index:x}"

    @property
    def pod_cidr4(self) -> str:
        return f"10.244.{self.index}.0/24"

    @property
    def pod_cidr6(self) -> str:
        return f"fd00:244:{self.index:x}::/64"

    @property
    def lab_link(self) -> str:
        """The veth end inside the lab namespace."""
        return f"n{self.index}"


@dataclass(frozen=True, slots=True)
class Layout:
    """Where everything of one lab is: ``DIR`` paths, namespaces, nodes."""

    dir: str
    lab_id: str
    nodes: int = 2
    cni: str = "bridge"
    ipv6: bool = False
    backend: str = "auto"  # podwall's data plane on every node (the conflist entry)

    @property
    def lab_netns(self) -> str:
        return f"{PREFIX}{self.lab_id}-lab"

    @property
    def netns_prefix(self) -> str:
        return f"{PREFIX}{self.lab_id}-"

    def pod_netns(self, number: int) -> str:
        return f"{PREFIX}{self.lab_id}-p{number}"

    def node_list(self) -> list[Node]:
        return [Node(self.lab_id, i, f"node-{i}") for i in range(1, self.nodes + 1)]

    def node(self, name: str) -> Node:
        for node in self.node_list():
            if node.name == name:
                return node
        raise KeyError(name)

    def path(self, *parts: str) -> str:
        return os.path.join(self.dir, *parts)

    def node_dir(self, node: Node, *parts: str) -> str:
        return self.path("nodes", node.name, *parts)

    @property
    def kubeconfig(self) -> str:
        return self.path("kubeconfig")

    @property
    def state_file(self) -> str:
        return self.path("lab.json")

    @property
    def pods_file(self) -> str:
        return self.path("pods.json")

    @property
    def log_file(self) -> str:
        return self.path("lab.log")
