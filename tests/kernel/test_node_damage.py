"""Never wedged, never open: a node whose kernel state is gone in part or whole.

Every backend, pods added through the real CNI chain (bridge dual-stack +
host-local + podwall) and programmed by the agent's writer: ``a`` accepts
only ``x``.  Then one damage:

* ``reboot``: netfilter wiped (every table, every ipset), the state folder kept;
* ``filter-flushed``: another tool flushed the filter table and deleted its
  chains (a whole-table restore without podwall);
* ``table-deleted``: the nf_tables table podwall's rules live in deleted
  (``inet podwall``; iptables-nft's ``ip``/``ip6 filter``);
* ``chain-deleted``: pod ``x``'s ingress chains deleted by hand, with the
  dispatch that led to them.

After it, an ADD of a new pod ``c`` and a DEL of the unrelated pod ``b``
succeed; ``c`` is isolated from its first packet; every pod whose kernel
state was touched is fail-closed; the agent's next sync (a restarted agent
after a reboot, the running one's drift repair otherwise) puts every pod's
chains back exactly as they were, without duplicates, and traffic follows
the policy again.  The ADD and DEL times on the damaged node are printed
(``-s``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from firewall_lab import probe
from tests.kernel import cni_helpers, faults
from tests.kernel.cni_helpers import Node, Pod

V4, V6 = "10.88.0.0/24", "fd00:88::/64"
Damage = Callable[[Node, str, dict[str, Pod]], None]

DAMAGES: dict[str, tuple[Damage, Callable[[str], set[str]]]] = {
    # damage, and which stale pods it leaves fail-closed (by backend)
    "reboot": (lambda node, backend, pods: faults.reboot(node), lambda backend: {"a", "x"}),
    "filter-flushed": (
        lambda node, backend, pods: faults.flush_filter(node, backend),
        lambda backend: set() if backend == "nftables" else {"a", "x"},
    ),
    "table-deleted": (
        lambda node, backend, pods: faults.delete_nft_table(node, backend),
        lambda backend: {"a", "x"},
    ),
    "chain-deleted": (
        lambda node, backend, pods: faults.delete_ingress_chain(node, backend, pods["x"]),
        lambda backend: {"x"},
    ),
}
CASES = [
    (backend, damage)
    for backend in faults.BACKENDS
    for damage in DAMAGES
    if not (damage == "table-deleted" and backend in ("iptables-legacy", "iptc"))
]
POLICY = [faults.allow_from("a", "x")]  # a accepts x only; x, b, c are open


@pytest.fixture
def node(node_ns: str, tmp_path: Any) -> Node:
    return Node(node_ns, str(tmp_path))


def serve(pods: dict[str, Pod]) -> list[probe.Server]:
    return cni_helpers.parallel(
        lambda pod: probe.serve(pod.netns, tcp=[faults.PORT]), pods.values()
    )


def allowed(key: tuple[str, str, str]) -> bool:
    """What ``POLICY`` allows: into ``a`` only from ``x``."""
    return key[1] != "a" or key[0] == "x"


@pytest.mark.parametrize(("backend", "damage"), CASES, ids=[f"{b}-{d}" for b, d in CASES])
def test_damaged_node_serves_add_and_del_and_stays_closed(
    node: Node, make_ns: Any, backend: str, damage: str
) -> None:
    network = cni_helpers.conflist([node.bridge([V4, V6]), node.podwall(backend=backend)])
    a, b, x = node.add_many(network, [make_ns(), make_ns(), make_ns()])
    pods = {"a": a, "b": b, "x": x}
    agent = faults.Agent(node, backend)
    agent.sync([*faults.pod_docs(pods, {}), *POLICY])
    chains_before = {key: faults.pod_chains(node, backend, pods[key]) for key in ("a", "x")}
    assert all(chains_before.values()), chains_before
    servers = serve(pods)
    try:
        wreck, closed = DAMAGES[damage]
        wreck(node, backend, pods)
        started = time.monotonic()
        c = node.add(network, make_ns())
        added = time.monotonic() - started
        started = time.monotonic()
        node.delete(network, [b])
        deleted = time.monotonic() - started
        print(f"\n{backend} {damage}: ADD {added:.3f}s, DEL {deleted:.3f}s")
        del pods["b"]
        pods["c"] = c
        servers += serve({"c": c})

        pairs = [("a", "x"), ("x", "a"), ("c", "a"), ("a", "c"), ("c", "x"), ("x", "c")]
        found = faults.reach(pods, pairs)
        shut = closed(backend) | {"c"}
        expected = {key: not shut & set(key[:2]) and allowed(key) for key in found}
        assert found == expected, f"after the damage and the next ADD/DEL: {found}"

        if damage == "reboot":  # the agent restarted with the node
            agent = faults.Agent(node, backend)
        agent.sync([*faults.pod_docs(pods, {}), *POLICY], full=True)
        for key in ("a", "x"):
            assert faults.pod_chains(node, backend, pods[key]) == chains_before[key], key
        found = faults.reach(pods, pairs)
        assert found == {key: allowed(key) for key in found}, found
        text = faults.podwall_text(node, backend)
        assert faults.duplicates(text) == []
        faults.Agent(node, backend).sync([*faults.pod_docs(pods, {}), *POLICY], full=True)
        assert faults.podwall_text(node, backend) == text, "another agent's resync changed it"
    finally:
        for server in servers:
            server.stop()
    node.delete(network, pods.values())
    agent.sync(POLICY)  # the peer sets are the agent's to remove
    assert node.trace() == []


@pytest.mark.parametrize("backend", faults.BACKENDS)
def test_del_of_a_programmed_pod_leaves_none_of_its_chains(
    node: Node, make_ns: Any, backend: str
) -> None:
    """The agent gave ``a`` tier chains (a NetworkPolicy selects it): its
    DEL removes them with the rest (the agent's peer sets are left to it)."""
    network = cni_helpers.conflist([node.bridge([V4]), node.podwall(backend=backend)])
    a, x = node.add_many(network, [make_ns(), make_ns()])
    agent = faults.Agent(node, backend)
    agent.sync([*faults.pod_docs({"a": a, "x": x}, {}), *POLICY])
    assert len(faults.pod_chains(node, backend, a)) > len(faults.pod_chains(node, backend, x))
    node.delete(network, [a])
    assert faults.pod_chains(node, backend, a) == []
    node.delete(network, [x])
    agent.sync(POLICY)  # the peer sets are the agent's to remove
    assert node.trace() == []
