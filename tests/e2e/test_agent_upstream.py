"""The agent with ``--upstream-policy``: ClusterNetworkPolicy, AdminNetworkPolicy
and BaselineAdminNetworkPolicy change traffic; the ``Accepted`` condition is
written once per generation (with the rule counts; failing closed says why,
with one Warning event); Node labels and addresses drive ``nodes`` peers; a
cluster without the upstream CRDs still syncs.  The agent's calls are recorded
for the RBAC check of ``deploy/components/upstream-policy-rbac``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.agent_env import RECORDED_UPSTREAM, AgentNode, Kube, record_agent_calls, wait_until
from tests.e2e.conftest import ApiServerHandle

GROUP = "policy.networking.k8s.io"


@pytest.fixture
def node(apiserver: ApiServerHandle, tmp_path: Path) -> Iterator[AgentNode]:
    made = AgentNode(Kube(apiserver.url), tmp_path).start()
    try:
        yield made
    finally:
        made.stop()
        record_agent_calls(
            apiserver.server.state.requests,
            source="tests/e2e/test_agent_upstream.py",
            path=RECORDED_UPSTREAM,
        )


def cnp(name: str, action: str, peer: dict[str, Any], direction: str = "ingress") -> dict[str, Any]:
    field = "from" if direction == "ingress" else "to"
    subject = "y" if direction == "ingress" else "x"
    return {
        "apiVersion": f"{GROUP}/v1alpha2",
        "kind": "ClusterNetworkPolicy",
        "metadata": {"name": name},
        "spec": {
            "tier": "Admin",
            "priority": 10,
            "subject": {"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": subject}}},
            direction: [{"name": "r", "action": action, field: [peer]}],
        },
    }


FROM_X = {"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "x"}}}


def accepted(node: AgentNode, kind: str, name: str, generation: int) -> dict[str, Any] | None:
    found = node.kube.get(kind, name) or {}
    for cond in (found.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Accepted" and cond.get("observedGeneration") == generation:
            return cond  # type: ignore[no-any-return]
    return None


def test_cluster_network_policy_status_and_events(node: AgentNode) -> None:
    node.kube.install_crds(upstream=True)
    node.start_agent("--upstream-policy")
    a = node.add_pod("x", "a")
    b = node.add_pod("y", "b")
    assert wait_until(lambda: node.reach(a, b), what="a→b open")
    created = node.kube.apply(cnp("guard", "Deny", FROM_X))
    wait_until(lambda: not node.reach(a, b), what="CNP Deny blocks a→b")
    assert node.reach(b, a)
    gen = created["metadata"]["generation"]
    cond = wait_until(lambda: accepted(node, "ClusterNetworkPolicy", "guard", gen), what="cond")
    assert (cond["status"], cond["reason"]) == ("True", "Accepted")
    assert "1 ingress and 0 egress rules in force" in cond["message"]
    wait_until(
        lambda: (
            node.node_status().get("programmedGenerations") == {"ClusterNetworkPolicy/guard": gen}
        ),
        what="NodeFirewall programmedGenerations",
    )
    updated = node.kube.apply(cnp("guard", "Accept", FROM_X))
    wait_until(lambda: node.reach(a, b), what="Accept opens a→b")
    # a peer podwall cannot enforce: this Deny rule denies all egress of x
    bad = node.kube.apply(cnp("guard", "Deny", {"domainNames": ["example.com"]}, "egress"))
    gen = bad["metadata"]["generation"]
    assert gen > updated["metadata"]["generation"]
    cond = wait_until(lambda: accepted(node, "ClusterNetworkPolicy", "guard", gen), what="cond")
    assert (cond["status"], cond["reason"]) == ("False", "UnsupportedField"), cond
    assert "domainNames peers are not supported" in cond["message"]
    assert "denies all egress (fail closed)" in cond["message"]
    assert not node.reach(a, b)
    events = node.kube.call("GET", "/api/v1/namespaces/default/events")["items"]
    warnings = [e for e in events if e["involvedObject"].get("name") == "guard"]
    assert [(e["type"], e["reason"]) for e in warnings] == [("Warning", "FailingClosed")]
    node.kube.delete("ClusterNetworkPolicy", "guard")
    wait_until(lambda: node.reach(a, b), what="a→b open after delete")


def test_anp_and_banp_and_nodes_peers(node: AgentNode) -> None:
    node.kube.install_crds(upstream=True)
    node.start_agent("--upstream-policy")
    a = node.add_pod("x", "a")
    b = node.add_pod("y", "b")
    c = node.add_pod("z", "c")
    banp = {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "BaselineAdminNetworkPolicy",
        "metadata": {"name": "default"},
        "spec": {"subject": {"namespaces": {}}, "ingress": [{"action": "Deny", "from": [FROM_X]}]},
    }
    node.kube.apply(banp)
    wait_until(lambda: not node.reach(a, b) and not node.reach(a, c), what="BANP denies x")
    anp = {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "AdminNetworkPolicy",
        "metadata": {"name": "x-to-z"},
        "spec": {
            "priority": 5,
            "subject": {"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "z"}}},
            "ingress": [{"action": "Allow", "from": [FROM_X]}],
        },
    }
    made = node.kube.apply(anp)
    wait_until(lambda: node.reach(a, c), what="ANP Allow over the BANP")
    assert not node.reach(a, b)
    for kind, name, gen in (
        ("AdminNetworkPolicy", "x-to-z", made["metadata"]["generation"]),
        ("BaselineAdminNetworkPolicy", "default", 1),
    ):
        cond = wait_until(
            lambda k=kind, n=name, g=gen: accepted(node, k, n, g), what=f"{kind} condition"
        )
        assert cond["status"] == "True", cond
    node.kube.delete("BaselineAdminNetworkPolicy", "default")
    node.kube.delete("AdminNetworkPolicy", "x-to-z")
    wait_until(lambda: node.reach(a, b), what="open again")
    # a Node whose address is c's IP stands in for a node: nodes peers follow it
    fake = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "stand-in", "labels": {"role": "db"}},
        "status": {"addresses": [{"type": "InternalIP", "address": c.ip}]},
    }
    node.kube.apply(fake)
    to_db = {"nodes": {"matchLabels": {"role": "db"}}}
    node.kube.apply(cnp("no-db-nodes", "Deny", to_db, direction="egress"))
    wait_until(lambda: not node.reach(a, c), what="egress to the Node's address denied")
    assert node.reach(a, b)
    node.kube.apply({**fake, "metadata": {"name": "stand-in", "labels": {"role": "web"}}})
    wait_until(lambda: node.reach(a, c), what="relabelled Node no longer selected")
    node.kube.delete("Node", "stand-in")


def test_without_the_upstream_crds_the_agent_still_syncs(node: AgentNode) -> None:
    for plural in (
        "clusternetworkpolicies",
        "adminnetworkpolicies",
        "baselineadminnetworkpolicies",
    ):
        node.kube.delete("CustomResourceDefinition", f"{plural}.{GROUP}")
    node.start_agent("--upstream-policy")
    a = node.add_pod("x", "a")
    b = node.add_pod("y", "b")
    node.synced_after(time.time())
    fwr = {
        "apiVersion": "podwall.io/v1alpha1",
        "kind": "FirewallRule",
        "metadata": {"name": "still-works"},
        "spec": {
            "tier": "Admin",
            "priority": 1,
            "subject": {"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}},
            "ingress": [{"name": "r", "action": "Deny", "from": [FROM_X]}],
        },
    }
    node.kube.apply(fwr)
    wait_until(lambda: not node.reach(a, b), what="FirewallRule enforced")
    wait_until(
        lambda: (node.kube.get("FirewallRule", "still-works") or {}).get("status"),
        what="FirewallRule status written",
    )
    assert "no clusternetworkpolicies in this cluster" in node.agent_log()
