"""Which pods' flows ``--cut-denied-flows`` cuts: those whose effective rules
(chains and the members of the sets they match) changed since the last sync."""

from __future__ import annotations

from typing import Any

from firewall_operator import cluster, compiler
from firewall_operator.agent.flows import FlowCutter, fingerprint
from firewall_plugin.endpoints import EndpointRecord

PODS = {"a": ("10.0.0.2", {"app": "a"}), "b": ("10.0.0.3", {"app": "b"})}
REMOTE = {"c": ("10.0.1.2", {"app": "friend"})}


def documents(
    *, policy: bool = True, friend_labels: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = [{"kind": "Namespace", "metadata": {"name": "ns"}}]
    pods = {**PODS, "c": (REMOTE["c"][0], friend_labels or REMOTE["c"][1])}
    for name, (ip, labels) in pods.items():
        docs.append({
            "kind": "Pod",
            "metadata": {"namespace": "ns", "name": name, "uid": f"u-{name}", "labels": labels},
            "spec": {"nodeName": "n1" if name in PODS else "n2", "containers": []},
            "status": {"phase": "Running", "podIPs": [{"ip": ip}]},
        })  # fmt: skip
    if policy:
        docs.append({
            "kind": "NetworkPolicy",
            "metadata": {"namespace": "ns", "name": "b-friends"},
            "spec": {"podSelector": {"matchLabels": {"app": "b"}},
                     "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "friend"}}}]}]},
        })  # fmt: skip
    return docs


RECORDS = [
    EndpointRecord.make(
        container_id=f"cid-{name}",
        ifname="eth0",
        podNamespace="ns",
        podName=name,
        podUID=f"u-{name}",
        ips=(f"{ip}/24",),
        hostInterface=f"veth{name}",
    )
    for name, (ip, _) in PODS.items()
]


def changed(cutter: FlowCutter, docs: list[dict[str, Any]]) -> list[str]:
    compiled = compiler.compile_node(cluster.Snapshot.from_documents(docs), RECORDS)
    return [record.podName for record in cutter.changed(compiled.families, RECORDS)]


def test_first_sight_cuts_nothing_and_a_repeat_neither() -> None:
    cutter = FlowCutter()
    assert changed(cutter, documents()) == []
    assert changed(cutter, documents()) == []


def test_a_policy_change_cuts_the_pods_it_selects_only() -> None:
    cutter = FlowCutter()
    changed(cutter, documents(policy=False))
    assert changed(cutter, documents()) == ["b"]
    assert changed(cutter, documents(policy=False)) == ["b"]


def test_a_peer_leaving_a_set_cuts_the_pods_matching_that_set() -> None:
    """The chains stay the same; the set of friends loses c."""
    cutter = FlowCutter()
    changed(cutter, documents())
    assert changed(cutter, documents(friend_labels={"app": "stranger"})) == ["b"]


def test_fingerprints_follow_the_chains_and_sets() -> None:
    snapshot = cluster.Snapshot.from_documents(documents())
    families = compiler.compile_node(snapshot, RECORDS).families
    (family, chains, members), *_ = fingerprint(families, RECORDS[1])
    assert family == "ipv4"
    assert chains[0].name == RECORDS[1].ingressChain
    assert any("10.0.1.2" in entries for _, entries in members)
