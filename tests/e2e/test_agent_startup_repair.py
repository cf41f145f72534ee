"""The agent, at start-up, gives every endpoint record whose kernel state is
gone its fail-closed state before its socket answers.

After a reboot kubelet may start pods before the agent, and the state
folder survives where netfilter does not.  The node here: pods programmed by
a running agent; the agent stopped; netfilter wiped (``faults.wipe_netfilter``);
the API unreachable from the node.  The test holds the podwall lock while the
new agent starts, so its repair waits: the socket must not answer then.
Once the lock is released the socket answers, and from that moment the pods
are fail-closed (traffic), though the agent has not listed a thing.  When
the API is back, the agent programs them as before.
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.agent_env import AgentNode, Kube, wait_until
from tests.e2e.conftest import ApiServerHandle
from tests.kernel import faults

HELD = 3.0  # seconds the test holds the lock while the agent starts


@pytest.fixture(params=["nftables", "iptables-legacy"])
def node(
    apiserver: ApiServerHandle, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[AgentNode]:
    made = AgentNode(Kube(apiserver.url), tmp_path, backend=request.param).start()
    try:
        yield made
    finally:
        made.stop()


def answers(path: str) -> bool:
    """Whether the agent's socket accepts a connection."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(path)
        except OSError:
            return False
    return True


def test_socket_answers_only_after_records_are_fail_closed(node: AgentNode) -> None:
    node.start_agent()
    a = node.add_pod("x", "a")
    b = node.add_pod("y", "b")
    wait_until(lambda: node.reach(a, b) and node.reach(b, a), what="both pods programmed open")
    assert node.stop_agent() == 0

    faults.wipe_netfilter(node.netns)  # the reboot; the state folder stays
    assert node.reach(a, b), "nothing is filtered after the wipe: the test would show nothing"
    assert node.forwarder is not None
    node.forwarder.conceal(node.netns)  # the API is unreachable from the node
    sock_path = os.path.join(node.dir("run"), "agent.sock")
    lock = os.open(os.path.join(node.dir("run"), "podwall.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        node.start_agent(wait=False)
        deadline = time.monotonic() + HELD
        while time.monotonic() < deadline:
            assert not answers(sock_path), "the socket answered before the records were repaired"
            assert node.agent is not None and node.agent.poll() is None, node.agent_log()
            time.sleep(0.05)
    finally:
        os.close(lock)
    wait_until(lambda: answers(sock_path), what="the agent's socket", timeout=30)
    assert not node.reach(a, b) and not node.reach(b, a), "the pods are open"
    listed = re.search(r"(?:list|watch) of \w+ failed", node.agent_log())
    assert listed, "the API was reachable: the test shows less"

    node.forwarder.expose(node.netns)  # the API is back: the agent programs them
    wait_until(lambda: node.reach(a, b) and node.reach(b, a), what="programmed again", timeout=40)
