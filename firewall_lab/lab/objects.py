"""The objects every lab starts with: the project's CRDs and one Node per node.

``seed`` stores them in-process (the lab process owns the server), with the
vendored upstream cluster policy CRDs (``crds/upstream``) when asked;
``crd_docs`` reads a CRD folder of the source tree.  Nodes carry labels
(``kubernetes.io/hostname`` and ``kubernetes.io/os`` as a kubelet sets them,
``podwall.io/lab``, ``podwall.io/node-index``)
and their underlay addresses, which ``nodes`` peers select.  No HTTP, no
kernel.
"""

from __future__ import annotations

import os
from typing import Any

import yaml

import firewall_lab
from firewall_lab.lab.apiserve import LabApiServer
from firewall_lab.lab.layout import Layout, Node

CRD_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(firewall_lab.__file__))), "crds"
)
UPSTREAM_CRD_DIR = os.path.join(CRD_DIR, "upstream")
#: libyaml when PyYAML has it: the upstream CRDs take 0.3 s with the pure-Python loader
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def crd_docs(folder: str = CRD_DIR) -> list[dict[str, Any]]:
    """Every CustomResourceDefinition in ``folder``."""
    docs: list[dict[str, Any]] = []
    for name in sorted(os.listdir(folder)):
        if name.endswith((".yaml", ".yml")):
            with open(os.path.join(folder, name)) as handle:
                docs += [d for d in yaml.load_all(handle, Loader=LOADER) if d]
    return [d for d in docs if d.get("kind") == "CustomResourceDefinition"]


def node_doc(layout: Layout, node: Node) -> dict[str, Any]:
    cidrs = [node.pod_cidr4] + ([node.pod_cidr6] if layout.ipv6 else [])
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node.name,
            "labels": {
                "kubernetes.io/hostname": node.name,
                "kubernetes.io/os": "linux",
                "podwall.io/lab": layout.lab_id,
                "podwall.io/node-index": str(node.index),
            },
        },
        "spec": {"podCIDR": cidrs[0], "podCIDRs": cidrs},
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": node.ip4},
                *([{"type": "InternalIP", "address": node.ip6}] if layout.ipv6 else []),
                {"type": "Hostname", "address": node.name},
            ],
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def seed(server: LabApiServer, layout: Layout, *, upstream: bool = False) -> None:
    """CRDs first (the registry learns their kinds), then the Nodes."""
    docs = crd_docs() + (crd_docs(UPSTREAM_CRD_DIR) if upstream else [])
    api = server.state.api

    def store() -> None:
        crds = api.registry.lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        nodes = api.registry.lookup("", "v1", "nodes")
        assert crds is not None and nodes is not None
        for doc in docs:
            api.create(crds, "", doc)
        for node in layout.node_list():
            api.create(nodes, "", node_doc(layout, node))

    server.call(store)
