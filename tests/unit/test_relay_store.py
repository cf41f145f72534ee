"""The relay's store: slim pods, changes that matter, history, 410, sweeps."""

from __future__ import annotations

import json
from typing import Any

from firewall_operator import cluster
from firewall_operator.relay.store import RelayStore, slim_pod


def pod(
    name: str, rv: int, *, app: str = "web", ip: str = "10.0.0.1", **extra: Any
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "x", "uid": f"u-{name}", "resourceVersion": str(rv),
                     "labels": {"app": app}, "annotations": extra.get("annotations", {}),
                     "managedFields": [{"manager": "kubelet", "fieldsV1": {"f:status": {}}}]},
        "spec": {"nodeName": "n1", "containers": [
            {"name": "c", "image": "x", "ports": [{"name": "http", "containerPort": 80},
                                                  {"containerPort": 9}]}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                   "conditions": extra.get("conditions", [])},
    }  # fmt: skip


def events(lines: list[bytes]) -> list[tuple[str, str, str]]:
    found = []
    for line in lines:
        event = json.loads(line)
        meta = event["object"]["metadata"]
        found.append((event["type"], meta["name"], meta["resourceVersion"]))
    return found


def test_slim_pod_keeps_what_policy_reads_and_little_else() -> None:
    full = pod("a", 3)
    slim = slim_pod(full)
    assert cluster.pod_from_dict(slim) == cluster.pod_from_dict(full)
    assert len(json.dumps(slim)) < len(json.dumps(full)) * 0.7
    assert "managedFields" not in json.dumps(slim) and "image" not in json.dumps(slim)


def test_only_changes_that_touch_policy_are_sent() -> None:
    store = RelayStore()
    sent: list[bytes] = []
    store.listeners.add(sent.append)
    assert store.observe("pods", "ADDED", pod("a", 1))
    assert not store.observe("pods", "MODIFIED", pod("a", 2, conditions=[{"type": "Ready"}]))
    assert not store.observe("pods", "MODIFIED", pod("a", 3, annotations={"k": "v"}))
    assert store.observe("pods", "MODIFIED", pod("a", 4, app="db"))
    assert not store.observe("pods", "MODIFIED", pod("a", 4, app="db")), "the same version again"
    assert store.observe("pods", "DELETED", pod("a", 5, app="db"))
    assert events(sent) == [("ADDED", "a", "1"), ("MODIFIED", "a", "4"), ("DELETED", "a", "5")]
    assert store.dropped == 2


def test_history_replays_after_a_version_and_says_410_when_too_old() -> None:
    store = RelayStore(history=3)
    for rv in range(1, 6):
        store.observe("pods", "ADDED" if rv == 1 else "MODIFIED", pod("a", rv, app=f"v{rv}"))
    assert events(store.since(3) or []) == [("MODIFIED", "a", "4"), ("MODIFIED", "a", "5")]
    assert store.since(1) is None, "version 2 left the history: the agent must list"
    assert json.loads(store.listing())["metadata"]["resourceVersion"] == "5"


def test_relist_sweeps_what_vanished_and_a_deleted_pod_stays_deleted() -> None:
    store = RelayStore()
    store.relist_item("pods", pod("a", 1), present := set())
    store.relist_item("pods", pod("b", 2, ip="10.0.0.2"), present)
    store.relist_finish("pods", present, "2")
    store.observe("pods", "DELETED", pod("b", 4, ip="10.0.0.2"))
    sent: list[bytes] = []
    store.listeners.add(sent.append)
    present = set()
    store.relist_item("pods", pod("b", 2, ip="10.0.0.2"), present)  # a list older than the delete
    assert store.relist_finish("pods", present, "3") == [("x", "a")]
    assert events(sent) == [("DELETED", "a", "3")]
    assert [item["metadata"]["name"] for item in json.loads(store.listing())["items"]] == []
