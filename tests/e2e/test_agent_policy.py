"""The agent as a process in a node netns: policies change traffic between pods."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.agent_env import AgentNode, Kube, wait_until
from tests.e2e.conftest import ApiServerHandle


@pytest.fixture
def node(apiserver: ApiServerHandle, tmp_path: Path) -> Iterator[AgentNode]:
    made = AgentNode(Kube(apiserver.url), tmp_path).start()
    try:
        yield made
    finally:
        made.stop()


def deny_all(namespace: str, name: str = "deny-all") -> dict[str, object]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    }


def test_networkpolicy_apply_update_delete(node: AgentNode) -> None:
    node.start_agent()
    a = node.add_pod("x", "a", {"app": "a"})
    b = node.add_pod("y", "b", {"app": "b"})
    assert wait_until(lambda: node.reach(a, b), what="a→b open")
    node.kube.apply(deny_all("y"))
    wait_until(lambda: not node.reach(a, b), what="a→b blocked by deny-all")
    allow = deny_all("y")
    allow["spec"] = {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]}
    node.kube.apply(allow)
    wait_until(lambda: node.reach(a, b), what="a→b allowed after update")
    node.kube.delete("NetworkPolicy", "deny-all", "y")
    moment = time.time()
    node.synced_after(moment)
    assert node.reach(a, b)
    assert node.reach(b, a)
