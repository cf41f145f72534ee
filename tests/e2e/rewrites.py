"""Foreign rewrites of podwall's kernel state, and a prober that times them.

``REWRITES``: what other tools (or an operator) do to a node's netfilter:
``iptables -F FORWARD``, a whole-table ``iptables-restore`` without podwall,
deleting podwall's jump, a Calico-style ACCEPT inserted above it, flushing
podwall's sets (``ipset flush`` / ``nft flush set``), its dispatch map,
deleting its nftables tables, ``nft flush ruleset``; each says which
backends it applies to and how to take away the foreign leftovers.
``start_rig``: a node with pods x/a and y/b and an agent, x -> y denied by
an Admin FirewallRule (its peers are a podwall set).
``podwall_state(node, backend)``: podwall's kernel state as comparable text
(no counters, handles or element order).  ``Prober``: connects from one pod
to another every few milliseconds in a process of its own and keeps the
CLOCK_MONOTONIC times of every attempt, so ``window()`` tells how long a
denied pair was open after a rewrite.

Shared by ``tests/e2e/test_foreign_rewrites.py`` and ``bench/bench_drift.py``.
Test support only.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from firewall_lab import netns
from tests.e2e.agent_env import AgentNode, Kube, Pod, wait_until
from tests.kernel.faults import OPEN_TABLE

INITVAL = re.compile(r" initval 0x[0-9a-f]+")  # random per set: a swapped-in copy differs
IPTABLES_BACKENDS = ("iptables-nft", "iptables-legacy", "iptc")
BACKENDS = ("nftables", *IPTABLES_BACKENDS)


def tools(backend: str) -> tuple[str, str]:
    """The (IPv4, IPv6) iptables commands that see ``backend``'s rules."""
    if backend == "iptables-nft":
        return "iptables-nft", "ip6tables-nft"
    return "iptables-legacy", "ip6tables-legacy"


def sh(node: str, *argv: str, stdin: str | None = None, check: bool = True) -> str:
    done = netns.run(node, argv, input=stdin, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


# --- podwall's state as text ------------------------------------------------------


def _plain(value: Any) -> Any:
    """An nft JSON object without handles and counters, element lists sorted."""
    if isinstance(value, dict):
        out = {k: _plain(v) for k, v in value.items() if k not in ("handle", "counter")}
        if isinstance(out.get("elem"), list):
            out["elem"] = sorted(out["elem"], key=json.dumps)
        return out
    if isinstance(value, list):
        return [_plain(v) for v in value if not (isinstance(v, dict) and "counter" in v)]
    return value


def podwall_state(node: str, backend: str) -> str:
    """Everything podwall holds in ``node``'s kernel, comparable across rebuilds."""
    if backend == "nftables":
        parts = []
        for family in ("inet", "bridge"):
            done = netns.run(node, ["nft", "-j", "list", "table", family, "podwall"], check=False)
            if done.returncode != 0:
                parts.append(f"no table {family} podwall")
                continue
            items = json.loads(done.stdout)["nftables"]
            parts += sorted(json.dumps(_plain(item), sort_keys=True) for item in items[1:])
        return "\n".join(parts)
    lines = []
    for tool in tools(backend):
        saved = sh(node, f"{tool}-save", "-t", "filter").splitlines()
        lines += [line for line in saved if "podwall" in line.lower()]
        forward = [line for line in saved if line.startswith("-A FORWARD ")]
        jumps = [index for index, line in enumerate(forward) if "PODWALL" in line]
        lines.append(f"{tool}: podwall's jumps at FORWARD {jumps}")
    saved = sh(node, "ipset", "save").splitlines()
    lines += sorted(INITVAL.sub("", line) for line in saved if "PODWALL" in line)
    return "\n".join(lines)


# --- the rewrites -----------------------------------------------------------------

Action = Callable[[str, str], None]  # (node netns, backend)


def _each_tool(*args: str) -> Action:
    def run(node: str, backend: str) -> None:
        for tool in tools(backend):
            sh(node, tool, "-w", *args)

    return run


def _restore_open(node: str, backend: str) -> None:
    for tool in tools(backend):
        sh(node, f"{tool}-restore", "-w", stdin=OPEN_TABLE)


def _drop_open_rule(node: str, backend: str) -> None:
    for tool in tools(backend):
        sh(node, tool, "-w", "-D", "FORWARD", "-m", "comment", "--comment", "another tool",
           "-j", "ACCEPT", check=False)  # fmt: skip


def _delete_jump(node: str, backend: str) -> None:
    deleted = 0
    for tool in tools(backend):  # IPv6 has none while no pod has an IPv6 address
        specs = sh(node, tool, "-w", "-S", "FORWARD").splitlines()
        for spec in (spec for spec in specs if spec.endswith("-j PODWALL-FORWARD")):
            sh(node, tool, "-w", "-D", *shlex.split(spec)[1:])
            deleted += 1
    assert deleted, "no jump to PODWALL-FORWARD"


def _ipset_flush(node: str, backend: str) -> None:
    names = [n for n in sh(node, "ipset", "list", "-n").split() if n.startswith("PODWALL-S")]
    assert names, "no podwall peer set to flush"
    for name in names:
        sh(node, "ipset", "flush", name)


def _nft_peer_sets(node: str) -> list[str]:
    found = json.loads(sh(node, "nft", "-j", "list", "sets", "inet"))["nftables"]
    return [
        item["set"]["name"]
        for item in found
        if "set" in item and item["set"]["table"] == "podwall"
        and item["set"]["name"].startswith("PODWALL-S")
    ]  # fmt: skip


def _nft_flush_sets(node: str, backend: str) -> None:
    names = _nft_peer_sets(node)
    assert names, "no podwall peer set to flush"
    for name in names:
        sh(node, "nft", "flush", "set", "inet", "podwall", name)


def _nft(*args: str) -> Action:
    def run(node: str, backend: str) -> None:
        sh(node, "nft", *args)

    return run


@dataclass(frozen=True)
class Rewrite:
    name: str
    backends: tuple[str, ...]
    do: Action
    undo: Action | None = None  # takes away what the foreign tool left behind
    opens: bool = True  # whether it opens the denied pair until repaired


REWRITES = (
    Rewrite("iptables-F-FORWARD", IPTABLES_BACKENDS, _each_tool("-F", "FORWARD")),
    Rewrite("whole-table-restore", IPTABLES_BACKENDS, _restore_open, _drop_open_rule),
    Rewrite("delete-jump", IPTABLES_BACKENDS, _delete_jump),
    Rewrite("accept-above-jump", IPTABLES_BACKENDS,
            _each_tool("-I", "FORWARD", "1", "-j", "ACCEPT"),
            _each_tool("-D", "FORWARD", "-j", "ACCEPT")),
    Rewrite("ipset-flush", IPTABLES_BACKENDS, _ipset_flush),
    Rewrite("nft-delete-table", ("nftables",), _nft("delete", "table", "inet", "podwall")),
    Rewrite("nft-flush-ruleset", ("nftables",), _nft("flush", "ruleset")),
    Rewrite("nft-flush-set", ("nftables",), _nft_flush_sets),
    Rewrite("nft-flush-dispatch-map", ("nftables",),
            _nft("flush", "map", "inet", "podwall", "to4")),
    Rewrite("nft-flush-bridge-chain", ("nftables",),
            _nft("flush", "chain", "bridge", "podwall", "guard"), opens=False),
    Rewrite("nft-delete-bridge-table", ("nftables",), _nft("delete", "table", "bridge", "podwall"),
            opens=False),
)  # fmt: skip


def rewrites_for(backend: str) -> list[Rewrite]:
    return [rewrite for rewrite in REWRITES if backend in rewrite.backends]


# --- the node -----------------------------------------------------------------------


def deny_x_to_y() -> dict[str, Any]:
    return {
        "apiVersion": "podwall.io/v1alpha1",
        "kind": "FirewallRule",
        "metadata": {"name": "deny-x-to-y"},
        "spec": {
            "tier": "Admin",
            "priority": 10,
            "subject": {"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}},
            "ingress": [
                {
                    "name": "no-x",
                    "action": "Deny",
                    "from": [{"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "x"}}}],
                }
            ],
        },
    }


@dataclass
class Rig:
    node: AgentNode
    a: Pod
    b: Pod

    @property
    def backend(self) -> str:
        return self.node.backend

    def isolated(self) -> bool:
        return not self.node.reach(self.a, self.b) and self.node.reach(self.b, self.a)

    def state(self) -> str:
        return podwall_state(self.node.netns, self.backend)


def start_rig(kube: Kube, root: Any, backend: str) -> Rig:
    node = AgentNode(kube, root, backend=backend).start()
    try:
        node.start_agent("--resync-seconds", "600")
        a, b = node.add_pod("x", "a"), node.add_pod("y", "b")
        kube.apply(deny_x_to_y())
        rig = Rig(node, a, b)
        wait_until(rig.isolated, timeout=30, what="x -> y denied, y -> x open")
        return rig
    except BaseException:
        node.stop()
        raise


def stop_rig(rig: Rig) -> None:
    try:
        for pod in list(rig.node.pods.values()):
            rig.node.delete_pod(pod)
        rig.node.kube.delete("FirewallRule", "deny-x-to-y")
    finally:
        rig.node.stop()


# --- timing -----------------------------------------------------------------------

PROBER = """
import socket, sys, time
host, port, every, wait = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
while True:
    start = time.monotonic()
    try:
        socket.create_connection((host, port), timeout=wait).close()
        ok = 1
    except OSError:
        ok = 0
    print(ok, start, flush=True)
    time.sleep(max(0.0, every - (time.monotonic() - start)))
"""


class Prober:
    """Connect attempts from netns ``source`` to ``ip:port`` every ``every``
    seconds (each waiting at most ``wait``), timed with CLOCK_MONOTONIC
    (shared by every process of the machine)."""

    def __init__(self, source: str, ip: str, port: int, *, every: float = 0.01,
                 wait: float = 0.05) -> None:  # fmt: skip
        argv = ["ip", "netns", "exec", source, sys.executable, "-I", "-S", "-c", PROBER,
                ip, str(port), str(every), str(wait)]  # fmt: skip
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)

    def stop(self) -> list[tuple[float, bool]]:
        """End the prober: every attempt as (start time, connected)."""
        self.process.terminate()
        out, _ = self.process.communicate(timeout=10)
        samples = []
        for line in out.splitlines():
            ok, _, stamp = line.partition(" ")
            if stamp:
                samples.append((float(stamp), ok == "1"))
        return samples


@dataclass(frozen=True)
class Window:
    """How long a denied pair was open after a rewrite at ``start``."""

    opened: bool
    seconds: float  # from the rewrite to the start of the last attempt that connected
    closed_by: float  # from the rewrite to the first refused attempt after that one

    def __str__(self) -> str:
        if not self.opened:
            return "never seen open"
        return f"open {self.seconds * 1000:.0f} ms (closed by {self.closed_by * 1000:.0f} ms)"


def window(samples: list[tuple[float, bool]], start: float) -> Window:
    after = [(stamp, ok) for stamp, ok in samples if stamp >= start]
    opened = [stamp for stamp, ok in after if ok]
    if not opened:
        return Window(False, 0.0, 0.0)
    last = max(opened)
    closed = [stamp for stamp, ok in after if not ok and stamp > last]
    return Window(True, last - start, (min(closed) if closed else last) - start)


def now() -> float:
    """The prober's clock (CLOCK_MONOTONIC)."""
    return time.monotonic()


def wait_for(check: Callable[[], bool], timeout: float) -> float:
    """Seconds until ``check()`` held; raises AssertionError after ``timeout``."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - start
