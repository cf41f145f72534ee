"""podwall next to the other firewalls of a node (issue 10's coexistence list).

Every test builds one node (bridge, dual-stack, the real CNI chain) with an
open pair (pods a and b, ``podDefault: allow``) and an isolated pod (c,
``podDefault: deny``), then brings in what another component of a real node
does, and asserts with traffic (TCP, IPv4 and IPv6) that c stays isolated
both ways and a <-> b stays open (or, under Docker's ``FORWARD`` policy DROP,
closed exactly as without podwall).  Where podwall's own kernel state must
not change, the test compares it before and after (counters aside).

The iptables data planes live inside ``FORWARD``, so whoever writes above
their jump wins until the agent puts it back; their repairs are the e2e
tests' business (``tests/e2e/test_foreign_rewrites.py``).  Here: what holds
with no agent at all.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from firewall_lab import netns, probe
from tests.kernel import cni_helpers, firewalld
from tests.kernel.cni_helpers import Node, Pod
from tests.kernel.faults import OPEN_TABLE

PORT = 8080
V4, V6 = "10.88.0.0/24", "fd00:88::/64"
FAMILIES = ("ipv4", "ipv6")
COUNTER = re.compile(r"counter packets \d+ bytes \d+ ")
IPTABLES = {  # tool: (IPv4 binary, IPv6 binary)
    "iptables-nft": ("iptables-nft", "ip6tables-nft"),
    "iptables-legacy": ("iptables-legacy", "ip6tables-legacy"),
}


class Site:
    """A node with pods a, b (open) and c (isolated), serving TCP ``PORT``."""

    def __init__(self, node: Node, make_ns: Any, plane: str) -> None:
        self.node, self.plane = node, plane
        primary = {**node.bridge([V4, V6]), "isDefaultGateway": True}
        self.allow = cni_helpers.conflist(
            [primary, node.podwall(backend=plane, pod_default="allow")]
        )
        self.deny = cni_helpers.conflist([primary, node.podwall(backend=plane, pod_default="deny")])
        a, b = node.add_many(self.allow, [make_ns(), make_ns()])
        self.pods: dict[str, Pod] = {"a": a, "b": b, "c": node.add(self.deny, make_ns())}
        self.servers = [probe.serve(pod.netns, tcp=[PORT]) for pod in self.pods.values()]

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def reachability(self, *, via: dict[str, str] | None = None) -> dict[str, bool]:
        """``"a->c ipv4": passed`` for every ordered pair and family; ``via``
        maps a target pod to the address to use instead of its own (a VIP)."""
        items: dict[str, probe.Probe] = {}
        for (src, dst), family in itertools.product(itertools.permutations(self.pods, 2), FAMILIES):
            address = (via or {}).get(f"{dst} {family}") or self.pods[dst].ip(family)
            target = probe.Target(address, PORT, "TCP")
            items[f"{src}->{dst} {family}"] = probe.Probe(self.pods[src].netns, target)
        found = probe.probe_many(items.values(), timeout=0.5)
        return {key: found[item] for key, item in items.items()}

    def assert_isolation(self, when: str, *, open_pair: bool = True) -> None:
        """c isolated both ways; a <-> b open (or closed, ``open_pair=False``)."""
        got = self.reachability()
        expected = {key: open_pair and "c" not in key.split()[0] for key in got}
        wrong = {key: passed for key, passed in got.items() if passed != expected[key]}
        assert not wrong, f"{when} ({self.plane}): unexpected reachability (True = passed): {wrong}"

    def settle(self, *, timeout: float = 10) -> None:
        """Wait until a and b reach each other in both families (neighbour
        discovery recovering from another firewall's rejects)."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.reachability()
            if all(got[f"{pair} {family}"] for pair in ("a->b", "b->a") for family in FAMILIES):
                return
            if time.monotonic() > deadline:
                return  # assert_isolation reports it
            time.sleep(0.5)

    def podwall_state(self) -> str:
        """podwall's whole kernel state as text, counters left out."""
        if self.plane == "nftables":
            text = "".join(
                self.node.run(["nft", "list", "table", family, "podwall"])
                for family in ("inet", "bridge")
            )
            return COUNTER.sub("", text)
        variant = "nft" if self.plane == "iptables-nft" else "legacy"
        saved = [
            self.node.run([f"{base}-{variant}-save", "-t", "filter"])
            for base in ("iptables", "ip6tables")
        ]
        return "\n".join(
            line for text in saved for line in text.splitlines() if "podwall" in line.lower()
        )

    def sh(self, *argv: str, stdin: str | None = None) -> str:
        done = netns.run(self.node.name, argv, input=stdin, check=False)
        assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr}\n{stdin or ''}"
        return done.stdout


@pytest.fixture
def site(
    request: pytest.FixtureRequest, node_ns: str, make_ns: Any, tmp_path: Path
) -> Iterator[Site]:
    made = Site(Node(node_ns, str(tmp_path)), make_ns, request.param)
    try:
        yield made
    finally:
        made.stop()


def planes(*names: str) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("site", names, indirect=True)


# --- 1. Calico: a chain jumped from FORWARD position 1 that ACCEPTs pod traffic ----


def calico_style(site: Site, tool: str) -> None:
    """What Calico's ``cali-FORWARD`` does for workloads it allows: jumped
    from FORWARD rule 1, ACCEPT on the pod interfaces and on its mark."""
    for binary in IPTABLES[tool]:
        site.sh(binary, "-w", "-N", "cali-FORWARD")
        for rule in (
            ["-m", "mark", "--mark", "0x10000/0x10000", "-j", "ACCEPT"],
            ["-i", "cni0", "-j", "ACCEPT"],
            ["-o", "cni0", "-j", "ACCEPT"],
        ):
            site.sh(binary, "-w", "-A", "cali-FORWARD", "-m", "comment", "--comment",
                    "cali:test", *rule)  # fmt: skip
        site.sh(binary, "-w", "-I", "FORWARD", "1", "-j", "cali-FORWARD")
        site.sh(binary, "-w", "-I", "INPUT", "1", "-j", "ACCEPT")


@planes("nftables")
@pytest.mark.parametrize("tool", IPTABLES)
def test_calico_style_accept_at_forward_position_1(site: Site, tool: str) -> None:
    before = site.podwall_state()
    calico_style(site, tool)
    forward = site.sh(IPTABLES[tool][0], "-w", "-S", "FORWARD").splitlines()
    assert forward[1] == "-A FORWARD -j cali-FORWARD", forward
    site.assert_isolation(f"with cali-FORWARD first in {tool}'s FORWARD")
    assert site.podwall_state() == before


# --- 2. kube-proxy's nftables mode: tables with their own base chains ------------


def kube_proxy_style(site: Site) -> dict[str, str]:
    """Tables like kube-proxy's nftables mode (``ip``/``ip6 kube-proxy``,
    base chains at dstnat-10 … srcnat, a service VIP DNATed to b and one to
    c) plus an ``inet`` table whose base chains ``accept`` everything at
    priorities around podwall's.  Returns the VIPs by ``"<pod> <family>"``."""
    vips: dict[str, str] = {}
    script = []
    for family, prefix in (("ip", "10.96.0."), ("ip6", "fd00:96::")):
        fam = "ipv4" if family == "ip" else "ipv6"
        b_vip, c_vip = f"{prefix}10", f"{prefix}11"
        vips[f"b {fam}"], vips[f"c {fam}"] = b_vip, c_vip
        b, c = site.pods["b"].ip(fam), site.pods["c"].ip(fam)
        script.append(f"""
table {family} kube-proxy {{
  chain filter-prerouting {{ type filter hook prerouting priority -110; ct state new accept; }}
  chain filter-input {{ type filter hook input priority -110; ct state new accept; }}
  chain filter-forward {{ type filter hook forward priority -110; ct state new accept; accept; }}
  chain filter-output {{ type filter hook output priority -110; accept; }}
  chain nat-prerouting {{ type nat hook prerouting priority dstnat; jump services; }}
  chain nat-output {{ type nat hook output priority -100; jump services; }}
  chain nat-postrouting {{ type nat hook postrouting priority srcnat; accept; }}
  chain services {{
    {family} daddr {b_vip} tcp dport {PORT} dnat to {"[" + b + "]" if family == "ip6" else b}:{PORT}
    {family} daddr {c_vip} tcp dport {PORT} dnat to {"[" + c + "]" if family == "ip6" else c}:{PORT}
  }}
}}""")
    chains = "\n".join(
        f"  chain fwd{index} {{ type filter hook forward priority {prio}; policy accept; accept; }}"
        for index, prio in enumerate((-400, -300, -150, -5, 0, 10, 300))
    )
    script.append(f"""
table inet others {{
{chains}
  chain pre {{ type filter hook prerouting priority -300; policy accept; accept; }}
  chain in {{ type filter hook input priority -5; policy accept; accept; }}
}}""")
    site.sh("nft", "-f", "-", stdin="\n".join(script))
    return vips


@planes("nftables", "iptables-nft", "iptables-legacy")
def test_kube_proxy_nftables_mode_tables(site: Site) -> None:
    before = site.podwall_state()
    vips = kube_proxy_style(site)
    site.assert_isolation("with kube-proxy-like nftables tables")
    got = site.reachability(via=vips)  # through the services: DNAT before podwall
    through = {key: got[key] for key in ("a->b ipv4", "a->b ipv6", "a->c ipv4", "a->c ipv6")}
    assert through == {"a->b ipv4": True, "a->b ipv6": True, "a->c ipv4": False,
                       "a->c ipv6": False}, through  # fmt: skip
    assert site.podwall_state() == before


# --- 3. firewalld ------------------------------------------------------------------

FIREWALLD_MISSING = firewalld.missing()


def start_firewalld(site: Site, folder: Path) -> firewalld.Firewalld:
    folder.mkdir()
    daemon = firewalld.Firewalld(site.node.name, folder)
    try:
        return daemon.start()
    except BaseException:
        daemon.stop()
        raise


@pytest.mark.skipif(FIREWALLD_MISSING is not None, reason=FIREWALLD_MISSING or "")
@planes("nftables")
def test_firewalld_start_reload_and_zone_change(site: Site, tmp_path: Path) -> None:
    """firewalld in the node's namespace (nftables backend, zone public by
    default, which rejects forwarded traffic): podwall's tables never change
    and c stays isolated through start, reload and a zone change."""
    before = site.podwall_state()
    daemon = start_firewalld(site, tmp_path / "firewalld")
    try:
        assert "table inet firewalld" in site.sh("nft", "list", "tables")
        assert site.podwall_state() == before, "starting firewalld changed podwall's state"
        site.assert_isolation("firewalld started", open_pair=False)  # zone public rejects
        daemon.cmd("--reload")
        assert site.podwall_state() == before, "firewall-cmd --reload changed podwall's state"
        site.assert_isolation("after firewall-cmd --reload", open_pair=False)
        daemon.cmd("--zone=trusted", "--change-interface=cni0")
        assert "cni0" in daemon.cmd("--zone=trusted", "--list-interfaces")
        assert site.podwall_state() == before, "a zone change changed podwall's state"
        site.settle()  # a and b had been rejected by zone public until now
        site.assert_isolation("cni0 moved to zone trusted")
        daemon.cmd("--reload")
        site.assert_isolation("trusted zone, reloaded", open_pair=False)
        assert site.podwall_state() == before
    finally:
        daemon.stop()
    site.settle()
    site.assert_isolation("firewalld stopped")
    assert site.podwall_state() == before


@pytest.mark.skipif(FIREWALLD_MISSING is not None, reason=FIREWALLD_MISSING or "")
@planes("iptables-nft")
def test_firewalld_flushes_the_iptables_planes(site: Site, tmp_path: Path) -> None:
    """Why the iptables backends need the agent's repair next to firewalld:
    at start (and on every reload) firewalld flushes and deletes the chains
    of every iptables table (``-F``/``-X``/``-Z``, its ipXtables backend,
    even with ``FirewallBackend=nftables``), podwall's included."""
    assert site.podwall_state()
    daemon = start_firewalld(site, tmp_path / "firewalld")
    try:
        assert site.podwall_state() == "", "firewalld no longer flushes iptables: update docs"
    finally:
        daemon.stop()


# --- 4. whole-table iptables-restore and iptables -F FORWARD ----------------------


@planes("nftables")
@pytest.mark.parametrize("tool", IPTABLES)
def test_whole_table_restore_and_forward_flush_change_nothing(site: Site, tool: str) -> None:
    before = site.podwall_state()
    for binary in IPTABLES[tool]:
        site.sh(f"{binary}-restore", "-w", stdin=OPEN_TABLE)
    site.assert_isolation(f"after a whole-table {tool}-restore")
    for binary in IPTABLES[tool]:
        site.sh(binary, "-w", "-F", "FORWARD")
    site.assert_isolation(f"after {tool} -F FORWARD")
    assert site.podwall_state() == before


# --- 6. Docker: FORWARD policy DROP -----------------------------------------------


@planes("nftables", "iptables-nft", "iptables-legacy")
def test_docker_forward_policy_drop_gets_no_accept_from_podwall(site: Site) -> None:
    """Docker sets ``FORWARD`` policy DROP (and adds its own chains): pods
    that podwall allows stay dropped, as without podwall; with the policy
    back to ACCEPT they pass again (podwall was not what dropped them)."""
    tool = "iptables-legacy" if site.plane == "iptables-legacy" else "iptables-nft"
    for binary in IPTABLES[tool]:
        site.sh(binary, "-w", "-N", "DOCKER-USER")
        site.sh(binary, "-w", "-A", "DOCKER-USER", "-j", "RETURN")
        site.sh(binary, "-w", "-A", "FORWARD", "-j", "DOCKER-USER")
        site.sh(binary, "-w", "-A", "FORWARD", "-o", "docker0", "-j", "ACCEPT")
        site.sh(binary, "-w", "-P", "FORWARD", "DROP")
    site.assert_isolation("FORWARD policy DROP", open_pair=False)
    for binary in IPTABLES[tool]:
        site.sh(binary, "-w", "-P", "FORWARD", "ACCEPT")
    site.assert_isolation("FORWARD policy back to ACCEPT")
