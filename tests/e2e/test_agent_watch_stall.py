"""Dead and stalled watches with a real agent process (default settings: 12 s).

The API double runs as its own process here, so that it can be stopped with
SIGSTOP: its sockets stay open (the kernel still acknowledges), nothing is
answered, nothing closes.  The agent must notice, report itself behind, and
list again once the API answers.  The second case is the half-open watch of
the issue (the API answers, the watch connection brings nothing more): the
double's freeze hook.  Bounds are generous (a loaded machine must not fail
them); the measured figures are printed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from firewall_lab.apiserver import spawn
from tests.e2e.agent_env import AgentNode, Kube, deny_all, wait_until

STOPPED = 20.0  # longer than the agent's default stall window (12 s)


@pytest.fixture(scope="module")
def api_process() -> Iterator[tuple[subprocess.Popen[str], str]]:
    proc, url = spawn(extra=["--bookmark-interval", "5"])
    try:
        yield proc, url
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        proc.wait(20)


@pytest.fixture
def stall_node(
    api_process: tuple[subprocess.Popen[str], str], tmp_path: Path
) -> Iterator[AgentNode]:
    made = AgentNode(Kube(api_process[1]), tmp_path).start()
    try:
        yield made
    finally:
        made.stop()


def isolated(node: AgentNode) -> tuple[Any, Any]:
    """Pods a (x) and b (y) with deny-all in y, programmed."""
    node.start_agent()
    a, b = node.add_pod("x", "a"), node.add_pod("y", "b")
    node.kube.apply(deny_all("y"))
    wait_until(lambda: not node.reach(a, b), what="deny-all in y")
    wait_until(
        lambda: node.node_status().get("watch", {}).get("state") == "Current", what="Current"
    )
    return a, b


def test_stopped_api_is_detected_and_relisted_when_it_answers_again(
    stall_node: AgentNode, api_process: tuple[subprocess.Popen[str], str]
) -> None:
    node, proc = stall_node, api_process[0]
    isolated(node)
    before = node.node_status()["watch"]["listings"]
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        time.sleep(STOPPED)
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    answering = time.monotonic()
    states, listed = [], []

    def relisted() -> bool:
        watch = node.node_status().get("watch") or {}
        states.append(watch.get("state"))
        listings = watch.get("listings") or {}
        if not listed and all(listings.get(kind, 0) > n for kind, n in before.items()):
            listed.append(time.monotonic() - answering)
        return bool(listed) and watch.get("state") == "Current"

    wait_until(relisted, timeout=30, what="every kind listed again and current")
    took = time.monotonic() - answering
    print(
        f"stopped API: every kind re-listed {listed[0]:.1f}s and current again "
        f"{took:.1f}s after it answered again"
    )
    assert "Behind" in states, f"the status never showed the agent behind: {states}"
    assert node.agent_log().count("stalled, listing again") >= len(before)


def test_half_open_watch_is_relisted_and_the_change_arrives(stall_node: AgentNode) -> None:
    node = stall_node
    a, b = isolated(node)
    node.kube.call("POST", "/_podwall/freeze-watches")  # open and new watches hang
    try:
        changed = time.monotonic()
        node.kube.delete("NetworkPolicy", "deny-all", "y")
        wait_until(
            lambda: (node.node_status().get("watch") or {}).get("state") == "Behind",
            timeout=30,
            what="the status shows the agent behind",
        )
        wait_until(lambda: node.reach(a, b), timeout=30, what="the change reached the kernel")
        took = time.monotonic() - changed
    finally:
        node.kube.call("DELETE", "/_podwall/freeze-watches")
    print(f"half-open watch: the change reached the kernel after {took:.1f}s (stall 12 s)")
    assert took > 5, "a frozen watch cannot have brought the change"
