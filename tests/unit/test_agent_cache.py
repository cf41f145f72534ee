"""The agent's slim cache: events, stale copies, tombstones, mark-and-sweep, snapshot."""

from __future__ import annotations

from typing import Any

import pytest

from firewall_operator.agent.cache import ClusterCache, rule_meta


def pod(
    name: str,
    rv: int,
    *,
    ns: str = "x",
    labels: dict[str, str] | None = None,
    ip: str = "10.0.0.1",
    phase: str = "Running",
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": f"u-{name}",
            "resourceVersion": str(rv),
            "labels": labels or {"app": "web"},
        },
        "spec": {
            "nodeName": "n1",
            "containers": [{"ports": [{"name": "web", "containerPort": 80}]}],
        },
        "status": {"phase": phase, "podIP": ip},
    }


def names(cache: ClusterCache) -> list[str]:
    return sorted(name for _, name in cache.entries["pods"])


CASES = [
    # (id, events as (type, name, rv, extra), expected pod names)
    ("add", [("ADDED", "a", 1, {})], ["a"]),
    ("delete", [("ADDED", "a", 1, {}), ("DELETED", "a", 2, {})], []),
    (
        "stale-list-copy-after-delete",
        [("ADDED", "a", 1, {}), ("DELETED", "a", 3, {}), (None, "a", 1, {})],
        [],
    ),
    (
        "older-copy-ignored",
        [("MODIFIED", "a", 5, {"ip": "10.0.0.5"}), (None, "a", 4, {"ip": "10.0.0.4"})],
        ["a"],
    ),
    (
        "succeeded-is-gone",
        [("ADDED", "a", 1, {}), ("MODIFIED", "a", 2, {"phase": "Succeeded"})],
        [],
    ),
    (
        "recreated-after-delete",
        [("ADDED", "a", 1, {}), ("DELETED", "a", 2, {}), ("ADDED", "a", 3, {})],
        ["a"],
    ),
]


@pytest.mark.parametrize(("events", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_events(events: list[tuple[Any, str, int, dict[str, Any]]], expected: list[str]) -> None:
    cache = ClusterCache()
    for kind, name, rv, extra in events:
        cache.observe("pods", kind, pod(name, rv, **extra))
    assert names(cache) == expected


def test_newer_watch_state_wins_over_older_list() -> None:
    cache = ClusterCache()
    cache.observe("pods", "MODIFIED", pod("a", 5, ip="10.0.0.5"))
    cache.observe("pods", None, pod("a", 4, ip="10.0.0.4"))
    found = cache.pod("x", "a")
    assert found is not None and found.ips == ("10.0.0.5",)


def test_change_detection_ignores_irrelevant_updates() -> None:
    cache = ClusterCache()
    assert cache.observe("pods", "ADDED", pod("a", 1))
    same = pod("a", 2)
    same["status"]["conditions"] = [{"type": "Ready"}]
    assert not cache.observe("pods", "MODIFIED", same)
    assert cache.observe("pods", "MODIFIED", pod("a", 3, labels={"app": "db"}))


def test_sweep_drops_what_the_list_lacked_but_keeps_newer_entries() -> None:
    cache = ClusterCache()
    for name, rv in (("a", 1), ("b", 2), ("late", 20)):
        cache.observe("pods", "ADDED", pod(name, rv))
    present: set[tuple[str, str]] = set()
    cache.relist_item("pods", pod("a", 1), present)
    swept = cache.relist_finish("pods", present, "10")
    assert swept == [("x", "b")]  # vanished across the re-list
    assert names(cache) == ["a", "late"]  # "late" appeared after the list was taken


def test_labels_are_interned_and_collected() -> None:
    cache = ClusterCache()
    cache.observe("pods", "ADDED", pod("a", 1))
    cache.observe("pods", "ADDED", pod("b", 2))
    a, b = cache.pod("x", "a"), cache.pod("x", "b")
    assert a is not None and b is not None and a.labels is b.labels
    cache.observe("pods", "ADDED", pod("c", 3, labels={"only": "c"}))
    cache.observe("pods", "DELETED", pod("c", 4))
    cache.relist_finish("pods", {("x", "a"), ("x", "b")}, "5")
    assert len(cache._labels) == 1


def test_firewallrule_status_alone_is_no_policy_change() -> None:
    rule = {
        "metadata": {"name": "r", "uid": "u", "generation": 1, "resourceVersion": "1"},
        "spec": {"tier": "Admin", "priority": 1, "subject": {"namespaces": {}}},
    }
    cache = ClusterCache()
    assert cache.observe("firewallrules", "ADDED", rule)
    with_status = {
        **rule,
        "metadata": {**rule["metadata"], "resourceVersion": "2"},
        "status": {
            "conditions": [
                {
                    "type": "Valid",
                    "status": "True",
                    "reason": "Valid",
                    "message": "m",
                    "observedGeneration": 1,
                }
            ]
        },
    }
    assert not cache.observe("firewallrules", "MODIFIED", with_status)
    assert rule_meta(with_status).valid == ("True", "Valid", "m", 1)
    assert [r.name for r, _ in cache.rules()] == ["r"]


def test_snapshot_holds_everything() -> None:
    cache = ClusterCache()
    cache.observe(
        "namespaces",
        "ADDED",
        {"metadata": {"name": "x", "labels": {"team": "t"}, "resourceVersion": "1"}},
    )
    cache.observe("pods", "ADDED", pod("a", 2))
    cache.observe(
        "networkpolicies",
        "ADDED",
        {
            "metadata": {"name": "p", "namespace": "x", "resourceVersion": "3"},
            "spec": {"podSelector": {}},
        },
    )
    snap = cache.snapshot()
    assert [p.key for p in snap.pods] == ["x/a"]
    assert snap.namespaces["x"].labels["team"] == "t"
    assert [p.name for p in snap.policies] == ["p"]


def test_pods_of_other_nodes_keep_no_uid() -> None:
    cache = ClusterCache(node="n1")
    for name, node in (("here", "n1"), ("there", "n2"), ("unscheduled", "")):
        obj = pod(name, 1)
        obj["metadata"]["uid"] = f"uid-{name}"
        obj["spec"] = {"nodeName": node} if node else {}
        cache.observe("pods", "ADDED", obj)
    uids = {
        name: found.uid
        for name in ("here", "there", "unscheduled")
        if (found := cache.pod("x", name))
    }
    assert uids == {"here": "uid-here", "there": "", "unscheduled": "uid-unscheduled"}
