"""cluster_net.Forwarder: the API server double is reachable from node namespaces."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from firewall_lab import cluster_net, netns
from tests.e2e.conftest import ApiServerHandle


def kubectl_in(node: str, kubeconfig: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, KUBECONFIG=kubeconfig, KUBECACHEDIR=kubeconfig + ".cache")
    return subprocess.run(
        ["ip", "netns", "exec", node, "kubectl", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_same_kubeconfig_works_inside_node_namespaces(
    apiserver: ApiServerHandle, node_ns: str
) -> None:
    port = int(apiserver.url.rsplit(":", 1)[1])
    before = kubectl_in(node_ns, apiserver.kubeconfig, "get", "namespaces", "-o", "name")
    assert before.returncode != 0  # nothing listens on the node's own loopback yet
    with cluster_net.Forwarder(("127.0.0.1", port)) as forwarder:
        assert forwarder.expose(node_ns) == port
        assert forwarder.expose(node_ns) == port  # idempotent
        done = kubectl_in(node_ns, apiserver.kubeconfig, "get", "namespaces", "-o", "name")
        assert done.returncode == 0, done.stderr
        assert "namespace/default" in done.stdout.split()
        forwarder.conceal(node_ns)
    assert netns.exists(node_ns)


def test_listening_socket_in_missing_namespace_fails() -> None:
    try:
        cluster_net.listening_socket("pw-no-such-ns-x")
    except cluster_net.ClusterNetError as exc:
        assert "pw-no-such-ns-x" in str(exc)
    else:
        raise AssertionError("expected ClusterNetError")


HOLD_WATCH = """
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET /api/v1/namespaces?watch=true HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
print(s.recv(12).decode(), flush=True)
time.sleep(60)
"""


def test_stop_with_open_connections_is_quiet(
    apiserver: ApiServerHandle, node_ns: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Stopping ends open splices without asyncio tracebacks (it cancelled them,
    and Python 3.11 logged a CancelledError for every connection)."""
    port = int(apiserver.url.rsplit(":", 1)[1])
    forwarder = cluster_net.Forwarder(("127.0.0.1", port)).start()
    holders = []
    try:
        forwarder.expose(node_ns)
        for _ in range(3):
            holder = subprocess.Popen(
                ["ip", "netns", "exec", node_ns, sys.executable, "-c", HOLD_WATCH, str(port)],
                stdout=subprocess.PIPE,
                text=True,
            )
            holders.append(holder)
            assert holder.stdout is not None and holder.stdout.readline().startswith("HTTP/1.1")
        with caplog.at_level(logging.DEBUG, logger="asyncio"):
            forwarder.stop()
    finally:
        for holder in holders:
            holder.kill()
            holder.wait()
    assert [r for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.ERROR] == []
