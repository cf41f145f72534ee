"""``DriftWatch.quiet``: the agent's own nftables write happens while its
watch does not listen to nf_tables notifications (the kernel then builds none
for the write's rules and elements), and another process's commit in that
window is noticed all the same, counted by the ruleset generation.

In a throwaway node namespace: the watch's socket leaves the notification
group for the write and is back after it; podwall's own write is not taken
for drift; a foreign commit inside the window is noticed when the window
closes, and one after it through the notifications, as before.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest

from firewall_lab import netns
from firewall_operator.agent import node as agent_node
from firewall_operator.nft_applier import NftApplier
from tests.kernel.test_nft_applier import compiled

NFTABLES_GROUP_BIT = 1 << (7 - 1)  # NFNLGRP_NFTABLES


@pytest.fixture
def node() -> Iterator[str]:
    name = netns.create(netns.unique_name("pwquiet"))
    try:
        yield name
    finally:
        netns.delete(name)


def listening(portid: int) -> bool:
    """Whether the netfilter socket ``portid`` of this namespace is in the
    nf_tables notification group (``/proc/net/netlink``'s Groups)."""
    with open("/proc/self/net/netlink") as handle:
        for line in handle.read().splitlines()[1:]:
            fields = line.split()
            if fields[1] == "12" and int(fields[2]) == portid:
                return bool(int(fields[3], 16) & NFTABLES_GROUP_BIT)
    raise AssertionError(f"no netfilter socket {portid}")


def wait_for(noticed: list[str], count: int, seconds: float = 3.0) -> None:
    deadline = time.monotonic() + seconds
    while len(noticed) < count and time.monotonic() < deadline:
        time.sleep(0.05)


def scenario(workdir: str) -> dict[str, object]:
    """Inside the node: three writes and two foreign commits; what the watch saw."""
    noticed: list[str] = []
    watch = agent_node.DriftWatch("nftables", lambda: noticed.append("drift"))
    watch.start()
    out: dict[str, object] = {}
    try:
        events = watch._events
        assert events is not None
        portid = events.sock.getsockname()[0]
        writer = NftApplier(run_dir=f"{workdir}/run", state_dir=f"{workdir}/state")
        out["listening before"] = listening(portid)
        with watch.quiet(lambda: writer.commits):
            out["listening during"] = listening(portid)
            writer.apply(compiled({"a"}).families)
            writer.apply(compiled({"a", "b"}).families)
        out["listening after"] = listening(portid)
        time.sleep(1.2)  # the watch's thread would have read a notification by now
        out["after own writes"] = len(noticed)
        with watch.quiet(lambda: writer.commits):
            writer.apply(compiled({"a"}).families)
            subprocess.run(["nft", "flush", "chain", "inet", "podwall", "forward"], check=True)
        out["after a foreign commit in the window"] = len(noticed)
        subprocess.run(["nft", "flush", "chain", "inet", "podwall", "input"], check=True)
        wait_for(noticed, 2)
        out["after a foreign commit outside"] = len(noticed)
    finally:
        watch.stop()
    return out


def test_the_watch_is_deaf_to_podwall_s_write_but_not_to_others(node: str, tmp_path: str) -> None:
    found = netns.call(node, scenario, str(tmp_path))
    assert found == {
        "listening before": True,
        "listening during": False,
        "listening after": True,
        "after own writes": 0,
        "after a foreign commit in the window": 1,
        "after a foreign commit outside": 2,
    }
