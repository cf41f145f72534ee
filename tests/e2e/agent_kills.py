"""kill -9 of the agent in the middle of a big apply, and what must follow.

``thousand_policies()``: 1,000 NetworkPolicies over namespaces x, y and z,
each with its own ipBlock peer and port (so 1,000 peer sets, ~333 rules per
pod) and every tenth with an egress rule too.  ``clean_run`` starts the
agent on a node whose pods have only their podDefault state, waits for its
first sync and returns how long that sync took; ``kill_during_apply``
starts it again and kills it -9 a random moment after it logged that it
started (its first sync begins then); ``converge`` starts it and returns
the time from the kill to its first good sync.  Shared by
``test_agent_kill.py`` (a few kills) and ``bench/bench_agent_kill.py``.
Test support only.
"""

from __future__ import annotations

import random
import re
import signal
import time
from typing import Any

from tests.e2e.agent_env import AgentNode, Kube, wait_until

NAMESPACES = ("x", "y", "z")
STARTED = re.compile(r"agent for node \S+ started")
SYNCED = re.compile(r"sync \d+ ok in ([0-9.]+)s")


def policy(index: int) -> dict[str, Any]:
    """Policy ``index``: its own /26 and port; every tenth also limits egress."""
    cidr = f"172.16.{index // 4}.{(index % 4) * 64}/26"
    spec: dict[str, Any] = {
        "podSelector": {},
        "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"ipBlock": {"cidr": cidr}}], "ports": [{"port": 1000 + index}]}],
    }
    if index % 10 == 0:
        spec["policyTypes"].append("Egress")
        spec["egress"] = [{"to": [{"ipBlock": {"cidr": cidr}}], "ports": [{"port": 53}]}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"p{index:04d}", "namespace": NAMESPACES[index % 3]},
        "spec": spec,
    }


def thousand_policies(kube: Kube, count: int = 1000) -> None:
    for namespace in NAMESPACES:
        if kube.get("Namespace", namespace) is None:
            kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    for index in range(count):
        doc = policy(index)
        if kube.get("NetworkPolicy", doc["metadata"]["name"], doc["metadata"]["namespace"]) is None:
            kube.call("POST", kube.collection(doc), doc)


def synced(node: AgentNode) -> float | None:
    """The duration of the current agent's first good sync, once it logged one."""
    found = SYNCED.search(node.agent_log())
    return float(found.group(1)) if found else None


def clean_run(node: AgentNode, *, timeout: float = 180) -> float:
    """Start the agent, wait for its first good sync, stop it; that sync's seconds."""
    node.start_agent(wait=False)
    seconds = wait_until(lambda: synced(node), what="the first sync", timeout=timeout)
    node.stop_agent()
    return float(seconds)


def kill_during_apply(node: AgentNode, rng: random.Random, window: float) -> float:
    """Start the agent and kill it -9 ``rng.uniform(0, window)`` seconds after
    it logged its start; returns that delay."""
    node.start_agent(wait=False)
    wait_until(lambda: STARTED.search(node.agent_log()), what="the agent's start", timeout=120)
    delay = rng.uniform(0, window)
    time.sleep(delay)
    node.stop_agent(signal.SIGKILL)
    return delay


def converge(node: AgentNode, *, timeout: float = 180) -> float:
    """Start the agent (right after a kill) and return the seconds until its
    first good sync ended."""
    killed = time.monotonic()
    node.start_agent(wait=False)
    wait_until(lambda: synced(node), what="a good sync after the kills", timeout=timeout)
    return time.monotonic() - killed
