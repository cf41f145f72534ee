"""The cache's cheap snapshots equal ``Snapshot.build`` and keep unchanged parts."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from firewall_operator import cluster, index
from firewall_operator.agent.cache import ClusterCache


def pod(name: str, rv: int, *, ns: str, app: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": f"u-{name}",
            "resourceVersion": str(rv),
            "labels": {"app": app},
        },
        "spec": {"nodeName": "n1"},
        "status": {
            "phase": "Running",
            "podIP": f"10.0.{int(name[1:]) // 250}.{int(name[1:]) % 250 + 1}",
        },
    }


def policy(name: str, rv: int, *, ns: str, port: int) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": ns, "resourceVersion": str(rv)},
        "spec": {"podSelector": {}, "ingress": [{"ports": [{"port": port}]}]},
    }


def namespace(name: str, rv: int, *, team: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": str(rv), "labels": {"team": team}}}


def rule(name: str, rv: int, *, priority: int, status: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "resourceVersion": str(rv), "generation": 1},
        "spec": {
            "tier": "Admin",
            "priority": priority,
            "subject": {"namespaces": {}},
            "ingress": [{"name": "a", "action": "Deny", "from": [{"namespaces": {}}]}],
        },
        "status": {"note": status},
    }


def upstream_rule(kind: str, name: str, rv: int, *, priority: int, status: str) -> dict[str, Any]:
    """The same rule as a ClusterNetworkPolicy, AdminNetworkPolicy or BANP
    (kind from the plural; list items may lack ``kind``, so it is left out)."""
    doc = rule(name, rv, priority=priority, status=status)
    entry = doc["spec"]["ingress"][0]
    del entry["name"]
    if kind == "clusternetworkpolicies":
        entry["action"] = "Accept"
    if kind == "baselineadminnetworkpolicies":
        del doc["spec"]["tier"], doc["spec"]["priority"]
    elif kind == "adminnetworkpolicies":
        del doc["spec"]["tier"]
    doc["status"] = {"conditions": [{"type": "Other", "status": status}]}
    return doc


def node(name: str, rv: int, *, role: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "resourceVersion": str(rv), "labels": {"role": role}},
        "status": {"addresses": [{"type": "InternalIP", "address": f"10.9.0.{len(name)}"}]},
    }


UPSTREAM = ["clusternetworkpolicies", "adminnetworkpolicies", "baselineadminnetworkpolicies"]
EVENT = st.tuples(
    st.sampled_from(["pods", "namespaces", "networkpolicies", "firewallrules", "nodes", *UPSTREAM]),
    st.sampled_from(["ADDED", "MODIFIED", "DELETED"]),
    st.integers(0, 5),  # object number
    st.integers(0, 2),  # a value that matters to policy
    st.booleans(),  # a change that does not matter (FirewallRule status)
)


def document(kind: str, number: int, value: int, other: bool, rv: int) -> dict[str, Any]:
    ns = f"ns{number % 3}"
    if kind == "pods":
        return pod(f"p{number}", rv, ns=ns, app=f"a{value}")
    if kind == "networkpolicies":
        return policy(f"np{number}", rv, ns=ns, port=80 + value)
    if kind == "namespaces":
        return namespace(f"ns{number}", rv, team=f"t{value}")
    if kind == "nodes":
        return node(f"n{number}", rv, role=f"r{value}")
    if kind in UPSTREAM:
        name = "default" if number % 2 else f"r{number}"  # the same names across kinds
        return upstream_rule(kind, name, rv, priority=value, status=str(other))
    return rule(f"r{number}", rv, priority=value, status=str(other))


def built(cache: ClusterCache) -> cluster.Snapshot:
    """What ``Snapshot.build`` makes of the cached objects."""
    values = {kind: [v for _, v in entries.values()] for kind, entries in cache.entries.items()}
    return cluster.Snapshot.build(
        namespaces=values["namespaces"],
        pods=values["pods"],
        policies=values["networkpolicies"],
        firewall_rules=[r for r, _ in values["firewallrules"]],
        cluster_policies=[r for kind in UPSTREAM for r, _ in values[kind]],
        nodes=values["nodes"],
    )


@settings(max_examples=150, deadline=None)
@given(st.lists(EVENT, max_size=40))
def test_snapshot_equals_a_built_one(events: list[tuple[str, str, int, int, bool]]) -> None:
    cache = ClusterCache()
    for rv, (kind, event_type, number, value, other) in enumerate(events, start=1):
        cache.observe(kind, event_type, document(kind, number, value, other, rv))  # type: ignore[arg-type]
        assert cache.snapshot() == built(cache)
    assert cache.observed == len(events)


def test_unchanged_kinds_keep_their_tuples() -> None:
    cache = ClusterCache()
    cache.observe("pods", "ADDED", pod("p1", 1, ns="x", app="a"))
    cache.observe("networkpolicies", "ADDED", policy("np", 2, ns="x", port=80))
    cache.observe("firewallrules", "ADDED", rule("r", 3, priority=1, status="a"))
    first = cache.snapshot()
    assert cache.snapshot() is first  # nothing changed: the same snapshot
    cache.observe("firewallrules", "MODIFIED", rule("r", 4, priority=1, status="b"))
    cache.observe("pods", "MODIFIED", pod("p1", 5, ns="x", app="a"))  # new rv only
    assert cache.snapshot() is first, "changes that do not matter to policy keep it"
    cache.observe("networkpolicies", "MODIFIED", policy("np", 6, ns="x", port=81))
    second = cache.snapshot()
    assert second.pods is first.pods and second.firewall_rules is first.firewall_rules
    assert second.policies != first.policies
    assert cache.observed == 6


@pytest.mark.parametrize("count", [3, 200], ids=["bisect-inserts", "one-merge"])
def test_many_additions_in_any_order(count: int) -> None:
    cache = ClusterCache()
    numbers = random.Random(count).sample(range(count), count)
    for rv, number in enumerate(numbers, start=1):
        cache.observe("pods", None, pod(f"p{number}", rv, ns=f"ns{number % 7}", app="a"))
    cache.observe("pods", "DELETED", pod("p1", count + 1, ns="ns1", app="a"))
    assert cache.snapshot() == built(cache)
    assert len(cache.snapshot().pods) == count - 1


@settings(max_examples=100, deadline=None)
@given(st.lists(EVENT, max_size=40))
@example(
    [
        ("pods", "ADDED", 1, 0, False),
        ("pods", "ADDED", 2, 0, False),
        ("pods", "MODIFIED", 1, 1, False),
        ("pods", "DELETED", 2, 0, False),
    ]
)
def test_index_follows_pod_deltas_as_a_full_comparison_would(
    events: list[tuple[str, str, int, int, bool]],
) -> None:
    """The index, moved by the snapshots' pod deltas, sees the same pod changes
    as one that compares every pod (and the deltas are there to be used)."""
    cache = ClusterCache()
    first = cache.snapshot()
    by_delta, by_scan = index.ClusterIndex(first), index.ClusterIndex(first)
    used = 0
    for rv, (kind, event_type, number, value, other) in enumerate(events, start=1):
        cache.observe(kind, event_type, document(kind, number, value, other, rv))  # type: ignore[arg-type]
        before = by_delta.snapshot.pods
        snap = cache.snapshot()
        if snap.pods is not before:
            assert snap.pod_delta is not None and snap.pod_delta.base is before
            used += 1
        found = by_delta.update(snap)
        expected = by_scan.update(dataclasses.replace(snap, pod_delta=None))
        assert sorted(map(repr, found.values())) == sorted(map(repr, expected.values()))
        assert {p.key: p for p in by_delta.pods.values()} == {
            p.key: p for p in by_scan.pods.values()
        }
    if any(kind == "pods" and event_type != "DELETED" for kind, event_type, *_ in events):
        assert used > 0, "pod changes came with a delta"


def test_upstream_status_alone_keeps_the_snapshot() -> None:
    cache = ClusterCache()
    doc = upstream_rule("clusternetworkpolicies", "c", 1, priority=1, status="a")
    cache.observe("clusternetworkpolicies", "ADDED", doc)
    cache.observe("nodes", "ADDED", node("n1", 2, role="worker"))
    first = cache.snapshot()
    assert [r.key for r in first.cluster_policies] == ["ClusterNetworkPolicy/c"]
    assert first.nodes[0].addresses == ("10.9.0.2",)
    doc = upstream_rule("clusternetworkpolicies", "c", 3, priority=1, status="b")
    cache.observe("clusternetworkpolicies", "MODIFIED", doc)
    assert cache.snapshot() is first
    cache.observe(
        "adminnetworkpolicies",
        "ADDED",
        upstream_rule("adminnetworkpolicies", "c", 4, priority=1, status="a"),
    )
    second = cache.snapshot()
    assert [r.key for r in second.cluster_policies] == [
        "AdminNetworkPolicy/c",
        "ClusterNetworkPolicy/c",
    ]
    assert second.nodes is first.nodes
