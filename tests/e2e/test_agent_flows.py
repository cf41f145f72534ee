"""The agent guarding the node's packet path beyond policy chains.

* Established flows and new policies: kept by default, cut with
  ``--cut-denied-flows``.  A server pod and two clients with open TCP
  connections to it; then a policy admits only one of the clients.  Without
  the flag both connections go on (conntrack accepts their packets before
  any policy); with it the denied client's connection stops and the
  admitted client's resumes (TCP pickup).
* ``bridge-nf-call-iptables`` switched off on a running node is switched
  back on by the next sync, and reported.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.agent_env import AgentNode, Kube, Pod, deny_all, record_agent_calls, wait_until
from tests.e2e.conftest import ApiServerHandle
from tests.kernel.attack_lab import Station

ECHO_PORT = 7007
POLICY = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"name": "friends-only", "namespace": "srv"},
    "spec": {
        "podSelector": {},
        "ingress": [
            {
                "from": [
                    {"namespaceSelector": {}, "podSelector": {"matchLabels": {"role": "friend"}}}
                ]
            }
        ],
    },
}


@pytest.fixture
def nft_node(apiserver: ApiServerHandle, tmp_path: Path) -> Iterator[AgentNode]:
    """An agent node on the nftables backend (the default of ``auto``)."""
    made = AgentNode(Kube(apiserver.url), tmp_path, backend="nftables").start()
    try:
        yield made
    finally:
        made.stop()
        record_agent_calls(apiserver.server.state.requests, source="tests/e2e/test_agent_*.py")


class Clients:
    def __init__(self, node: AgentNode, server: Pod) -> None:
        self.node, self.server = node, server
        self.friend = node.add_pod("cli", "friend", {"role": "friend"})
        self.stranger = node.add_pod("cli", "stranger", {"role": "stranger"})
        self.stations = {pod.name: Station(pod.netns) for pod in (self.friend, self.stranger)}
        self.echo_server = Station(server.netns)
        self.echo_server.call("listen", port=ECHO_PORT)
        self.count = 0

    def connect(self) -> None:
        for name, station in self.stations.items():
            connected = station.call("connect", name="f", to=self.server.ip, port=ECHO_PORT,
                                     timeout=2)  # fmt: skip
            assert connected, name
            assert self.echo(name), f"{name}: no echo on a fresh connection"

    def echo(self, name: str) -> bool:
        self.count += 1
        data = f"pw-{self.count:08d}"
        return bool(self.stations[name].call("echo", name="f", data=data, timeout=1.0))

    def stop(self) -> None:
        for station in [*self.stations.values(), self.echo_server]:
            station.stop()


def _policy_in_force(node: AgentNode, clients: Clients, server: Pod) -> Any:
    node.kube.apply(POLICY)
    return wait_until(
        lambda: not node.reach(clients.stranger, server), what="new connections of the stranger"
    )


def test_established_flows_are_kept_by_default_and_cut_on_request(nft_node: AgentNode) -> None:
    node = nft_node
    node.start_agent()
    server = node.add_pod("srv", "server", {"app": "server"})
    clients = Clients(node, server)
    try:
        clients.connect()
        _policy_in_force(node, clients, server)
        assert node.reach(clients.friend, server)
        assert clients.echo("friend") and clients.echo("stranger"), "default: flows are kept"
        node.kube.delete("NetworkPolicy", "friends-only", "srv")
        wait_until(lambda: node.reach(clients.stranger, server), what="policy gone")

        node.stop_agent()
        node.start_agent("--cut-denied-flows")
        node.synced_after(time.time())
        clients.connect()  # new connections, seen by the agent's first sync
        _policy_in_force(node, clients, server)
        wait_until(lambda: not clients.echo("stranger"), what="the denied flow to stop")
        assert clients.echo("friend"), "the allowed flow did not resume"
        assert "cut " in node.agent_log() and "established flows" in node.agent_log()
    finally:
        clients.stop()


BRIDGE_NF = "net.bridge.bridge-nf-call-iptables"


def test_bridge_netfilter_switched_off_is_switched_back_on_and_reported(node: AgentNode) -> None:
    """Someone turns bridge-nf-call-iptables off on a running node (bridged
    pod traffic would skip every rule): the next sync turns it back on, logs
    it and posts a Warning event on the NodeFirewall; the policy holds."""
    node.start_agent("--resync-seconds", "2")
    a = node.add_pod("x", "a", {"app": "a"})
    b = node.add_pod("y", "b", {"app": "b"})
    node.kube.apply(deny_all("y"))
    wait_until(lambda: not node.reach(a, b), what="a->b blocked")
    node.run("sysctl", "-q", "-w", f"{BRIDGE_NF}=0")
    wait_until(lambda: node.run("sysctl", "-n", BRIDGE_NF).strip() == "1", timeout=10,
               what="bridge-nf-call-iptables back on")  # fmt: skip
    assert not node.reach(a, b)
    wait_until(lambda: f"{BRIDGE_NF} was 0: set it to 1" in node.agent_log(), what="the log line")

    def event() -> Any:
        found = node.kube.call("GET", "/api/v1/namespaces/default/events") or {}
        return [e for e in found.get("items", []) if e.get("reason") == "BridgeNetfilterRepaired"]

    (posted,) = wait_until(event, what="the Warning event")
    assert posted["type"] == "Warning"
    assert posted["involvedObject"]["kind"] == "NodeFirewall"
    assert posted["involvedObject"]["name"] == node.node
    assert BRIDGE_NF in posted["message"]
    assert not node.node_status().get("lastError")
