"""An agent that gets its pods from ``podwall relay`` instead of the API server."""

from __future__ import annotations

import json
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from firewall_lab import cluster_net
from tests.e2e.agent_env import PODWALL, AgentNode, wait_until
from tests.e2e.conftest import ApiServerHandle


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def relay(apiserver: ApiServerHandle, tmp_path: Any) -> Iterator[str]:
    """A ``podwall relay`` process against the double; yields its URL."""
    port = free_port()
    log = open(tmp_path / "relay.log", "wb")  # noqa: SIM115 - closed below
    argv = [PODWALL, "relay", "--kubeconfig", apiserver.kubeconfig, "--host", "127.0.0.1"]
    proc = subprocess.Popen([*argv, "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    try:
        wait_until(healthy, timeout=20, what="the relay listed pods")
        yield url
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


def web_only(namespace: str) -> dict[str, Any]:
    peer = {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "web"}}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "web-only", "namespace": namespace},
        "spec": {"podSelector": {}, "ingress": [{"from": [peer]}]},
    }


def test_agent_takes_its_pods_from_the_relay(
    node: AgentNode, relay: str, apiserver: ApiServerHandle
) -> None:
    port = int(relay.rsplit(":", 1)[1])
    with cluster_net.Forwarder(("127.0.0.1", port)) as forwarder:
        forwarder.expose(node.netns)  # the relay's URL works inside the node, too
        since = len(apiserver.server.state.requests)
        node.start_agent("--pods-from", relay)
        web, other = node.add_pod("x", "web", {"app": "web"}), node.add_pod("x", "other")
        server = node.add_pod("y", "server")
        node.kube.apply(web_only("y"))
        wait_until(lambda: node.reach(web, server), what="app=web may reach y")
        wait_until(lambda: not node.reach(other, server), what="others may not")
        patch = {"metadata": {"labels": {"app": "web"}}}
        node.kube.call(
            "PATCH", "/api/v1/namespaces/x/pods/other", patch, "application/merge-patch+json"
        )
        wait_until(lambda: node.reach(other, server), what="a relabelled pod, via the relay")
        with urllib.request.urlopen(relay + "/_stats", timeout=5) as answer:
            stats = json.loads(answer.read())
        assert stats["watchers"] >= 1 and stats["sent"] >= 4, stats
        assert node.node_status()["watch"]["listings"]["pods"] == 1
        asked = {
            r["path"]
            for r in apiserver.server.state.requests[since:]
            if "podwall-agent" in r["user_agent"]
        }
        assert "/api/v1/pods" not in asked, "the agent asked the API server for pods"
        assert "/apis/networking.k8s.io/v1/networkpolicies" in asked, asked
