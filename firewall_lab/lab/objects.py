"""The objects every lab starts with: the project's CRDs and one Node per node.

``seed`` stores them in-process (the lab process owns the server); ``crd_docs``
reads ``crds/`` of the source tree.  No HTTP, no kernel.
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


def crd_docs(folder: str = CRD_DIR) -> list[dict[str, Any]]:
    """Every CustomResourceDefinition in ``folder``."""
    docs: list[dict[str, Any]] = []
    for name in sorted(os.listdir(folder)):
        if name.endswith((".yaml", ".yml")):
            with open(os.path.join(folder, name)) as handle:
                docs += [d for d in yaml.safe_load_all(handle) if d]
    return [d for d in docs if d.get("kind") == "CustomResourceDefinition"]


def node_doc(layout: Layout, node: Node) -> dict[str, Any]:
    cidrs = [node.pod_cidr4] + ([node.pod_cidr6] if layout.ipv6 else [])
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node.name,
            "labels": {"kubernetes.io/hostname": node.name, "podwall.io/lab": layout.lab_id},
        },
        "spec": {"podCIDR": cidrs[0], "podCIDRs": cidrs},
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": node.ip4},
                {"type": "Hostname", "address": node.name},
            ],
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def seed(server: LabApiServer, layout: Layout) -> None:
    """CRDs first (the registry learns their kinds), then the Nodes."""
    api = server.state.api

    def store() -> None:
        crds = api.registry.lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        nodes = api.registry.lookup("", "v1", "nodes")
        assert crds is not None and nodes is not None
        for doc in crd_docs():
            api.create(crds, "", doc)
        for node in layout.node_list():
            api.create(nodes, "", node_doc(layout, node))

    server.call(store)
