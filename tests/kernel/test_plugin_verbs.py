"""The podwall plugin's verbs, run as a real process in a throwaway node netns.

prevResults are hand-written (no pod namespaces needed); the integration with
the reference plugins lives in test_chain_*.py.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from firewall_lab import netns
from firewall_plugin import names
from tests.kernel import plugin_cli as cli

V4, V6 = "10.22.0.5/24", "fd00:22::5/64"
SAVE_OF = {
    "iptables-nft": ("iptables-nft-save", "ip6tables-nft-save"),
    "iptables-legacy": ("iptables-legacy-save", "ip6tables-legacy-save"),
    "iptc": ("iptables-legacy-save", "ip6tables-legacy-save"),
}


@pytest.fixture
def node(node_ns: str) -> str:
    """The node namespace with a foreign FORWARD rule in every variant."""
    return cli.prime(node_ns)


def test_version(node_ns: str) -> None:
    out = cli.invoke(node_ns, "VERSION", "")
    assert out.status == 0
    assert out.output == {
        "cniVersion": "1.1.0",
        "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"],
    }


@pytest.mark.parametrize("backend", ["nftables", "iptables-nft", "iptables-legacy", "iptc", "auto"])
def test_add_check_del_leaves_no_trace(node: str, tmp_path: Path, backend: str) -> None:
    prev = cli.prev_result(node, V4, V6)
    config = cli.conf(tmp_path, prev, backend=backend)
    before = cli.snapshot(node, tmp_path / "state")

    added = cli.invoke(node, "ADD", config)
    assert added.status == 0, added.output
    assert added.output == prev
    record = json.loads((tmp_path / "state/endpoints/c1_eth0.json").read_text())
    assert (record["podNamespace"], record["podName"], record["podUID"]) == ("ns1", "pod1", "uid-1")
    assert record["ips"] == [V4, V6]
    assert record["hostInterface"] == cli.default_host((V4, V6))[0]
    text = cli.kernel_text(node, backend)
    egress = names.egress_chain("c1", "eth0")
    assert egress in text and "10.22.0.5" in text and "fd00:22::5" in text, text
    if backend in ("nftables", "auto"):
        assert f"{egress}-6" in text
    else:
        assert "-A PODWALL-TO -d 10.22.0.5/32" in text

    checked = cli.invoke(node, "CHECK", config)
    assert checked.status == 0, checked.output

    deleted = cli.invoke(node, "DEL", config)
    assert deleted.status == 0, deleted.output
    assert deleted.output is None
    assert cli.snapshot(node, tmp_path / "state") == before
    assert cli.podwall_lines(node) == []


def test_add_twice_is_idempotent(node: str, tmp_path: Path) -> None:
    config = cli.conf(tmp_path, cli.prev_result(node, V4, V6))
    assert cli.invoke(node, "ADD", config).status == 0
    first = cli.snapshot(node, tmp_path / "state")
    assert cli.invoke(node, "ADD", config).status == 0
    assert cli.snapshot(node, tmp_path / "state") == first


@pytest.mark.parametrize(("version"), ["0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_add_echoes_prev_result_in_the_requested_version(
    node: str, tmp_path: Path, version: str
) -> None:
    prev = cli.prev_result(node, V4, V6, version=version)
    out = cli.invoke(node, "ADD", cli.conf(tmp_path, prev, cniVersion=version))
    assert out.status == 0, out.output
    assert out.output["cniVersion"] == version
    assert [("version" in ip) for ip in out.output["ips"]] == [version.startswith("0.")] * 2


def test_del_without_prev_result_or_netns_and_twice(node: str, tmp_path: Path) -> None:
    before = cli.snapshot(node, tmp_path / "state")
    assert cli.invoke(node, "ADD", cli.conf(tmp_path, cli.prev_result(node, V4))).status == 0
    bare = cli.conf(tmp_path)
    for _ in range(2):
        out = cli.invoke(node, "DEL", bare, drop=("CNI_NETNS",))
        assert out.status == 0, out.output
    assert cli.snapshot(node, tmp_path / "state") == before
    never_added = cli.invoke(node, "DEL", bare, container_id="never")
    assert never_added.status == 0, never_added.output


@pytest.mark.parametrize("backend", ["nftables", "iptables-nft"])
def test_del_keeps_the_other_pods(node: str, tmp_path: Path, backend: str) -> None:
    a = cli.conf(tmp_path, cli.prev_result(node, "10.22.0.5/24"), backend=backend)
    b = cli.conf(tmp_path, cli.prev_result(node, "10.22.0.6/24", V6), backend=backend)
    assert cli.invoke(node, "ADD", a, container_id="a").status == 0
    assert cli.invoke(node, "ADD", b, container_id="b").status == 0
    assert cli.invoke(node, "DEL", a, container_id="a").status == 0
    checked = cli.invoke(node, "CHECK", b, container_id="b")
    assert checked.status == 0, checked.output
    text = cli.kernel_text(node, backend)
    assert "10.22.0.5" not in text and "10.22.0.6" in text
    assert names.ingress_chain("a", "eth0") not in text


def _rule_lines(node: str, tool: str, chain: str, target: str) -> list[str]:
    return [
        line[3:]
        for line in cli.save(node, tool + "-save").splitlines()
        if line.startswith(f"-A {chain} ") and line.split()[-1] == target
    ]


def _drop_chain(node: str, chain: str) -> None:
    for tool in ("iptables-nft", "ip6tables-nft"):
        for spec in _rule_lines(node, tool, names.TO_CHAIN, chain):
            netns.run(node, ["sh", "-c", f"{tool} -D {spec}"])
        netns.run(node, [tool, "-F", chain])
        netns.run(node, [tool, "-X", chain])


def _break(node: str, tmp: Path, what: str) -> str:
    """Remove one piece of state by hand; return text CHECK must name."""
    ingress = names.ingress_chain("c1", "eth0")
    source = names.from_chain("c1", "eth0")
    host = cli.default_host((V4, V6))[0]
    if what == "chain":
        _drop_chain(node, ingress)
        return f"chain {ingress} (ipv4) is missing"
    if what == "dispatch":
        for spec in _rule_lines(node, "iptables-nft", names.FORWARD_CHAIN, source):
            netns.run(node, ["sh", "-c", f"iptables-nft -D {spec}"])
        return f"the dispatch to {source} (ipv4) is missing from PODWALL-FORWARD"
    if what == "jump":
        netns.run(node, ["ip6tables-nft", "-D", "FORWARD", "1"])
        return "FORWARD jump to PODWALL-FORWARD (ipv6) is not rule 1"
    if what == "jump-not-first":
        netns.run(node, ["iptables-nft", "-I", "INPUT", "1", "-j", "ACCEPT"])
        return "INPUT jump to PODWALL-INPUT (ipv4) is not rule 1"
    if what == "element":
        element = f'{{ "{host}" . 10.22.0.5 }}'
        netns.run(node, ["sh", "-c", f"nft delete element inet podwall from4 '{element}'"])
        return "missing from inet podwall set from4"
    if what == "table":
        netns.run(node, ["nft", "delete", "table", "bridge", "podwall"])
        return "table inet/bridge podwall is missing"
    (tmp / "state/endpoints/c1_eth0.json").unlink()
    return "endpoint record"


BREAKS = {
    "iptables-nft": ["chain", "dispatch", "jump", "jump-not-first", "record"],
    "nftables": ["element", "table", "record"],
}


@pytest.mark.parametrize(
    ("backend", "what"), [(b, w) for b, whats in BREAKS.items() for w in whats]
)
def test_check_names_what_is_missing(node: str, tmp_path: Path, backend: str, what: str) -> None:
    config = cli.conf(tmp_path, cli.prev_result(node, V4, V6), backend=backend)
    assert cli.invoke(node, "ADD", config).status == 0
    expected = _break(node, tmp_path, what)
    before = cli.snapshot(node, tmp_path)
    out = cli.invoke(node, "CHECK", config)
    assert (out.status, out.code) == (1, 101), out.output
    assert expected in out.output["msg"]
    assert cli.snapshot(node, tmp_path) == before  # CHECK never repairs


def test_check_on_a_fresh_node_creates_nothing(node: str, tmp_path: Path) -> None:
    before = cli.snapshot(node, tmp_path)
    out = cli.invoke(node, "CHECK", cli.conf(tmp_path, cli.prev_result(node, V4, V6)))
    assert out.code == 101
    assert cli.snapshot(node, tmp_path) == before
    assert not (tmp_path / "run").exists() and not (tmp_path / "state").exists()


@pytest.mark.parametrize("backend", ["nftables", "iptables-nft"])
def test_gc_removes_what_valid_attachments_does_not_name(
    node: str, tmp_path: Path, backend: str
) -> None:
    for n, cid in enumerate(("keep", "gone1", "gone2")):
        prev = cli.prev_result(node, f"10.22.0.{10 + n}/24", f"fd00:22::{10 + n}/64")
        config = cli.conf(tmp_path, prev, backend=backend)
        assert cli.invoke(node, "ADD", config, container_id=cid).status == 0
    orphan = names.ingress_chain("no-record", "eth0")
    if backend == "nftables":
        netns.run(node, ["nft", "add", "chain", "inet", "podwall", f"{orphan}-4"])
    else:
        netns.run(node, ["iptables-nft", "-N", orphan])
    valid = [{"containerID": "keep", "ifname": "eth0"}]
    gc = cli.conf(tmp_path, cniVersion="1.1.0", backend=backend)
    gc["cni.dev/valid-attachments"] = valid
    out = cli.invoke(node, "GC", gc, drop=("CNI_CONTAINERID", "CNI_IFNAME", "CNI_NETNS"))
    assert (out.status, out.output) == (0, None), out.output
    assert sorted(p.name for p in (tmp_path / "state/endpoints").iterdir()) == ["keep_eth0.json"]
    saved = cli.kernel_text(node, backend)
    for gone in ("gone1", "gone2", "no-record"):
        assert names.ingress_chain(gone, "eth0") not in saved
        assert names.egress_chain(gone, "eth0") not in saved
    assert "10.22.0.11" not in saved and "fd00:22::12" not in saved
    keep = cli.conf(tmp_path, cli.prev_result(node, "10.22.0.10/24", "fd00:22::10/64"))
    keep["backend"] = backend
    checked = cli.invoke(node, "CHECK", keep, container_id="keep")
    assert checked.status == 0, checked.output
    gc["cni.dev/valid-attachments"] = []
    assert cli.invoke(node, "GC", gc).status == 0
    assert cli.podwall_lines(node) == []


def test_status_ok_and_not_ready(node: str, tmp_path: Path) -> None:
    ok = cli.invoke(node, "STATUS", cli.conf(tmp_path, cniVersion="1.1.0"))
    assert (ok.status, ok.output) == (0, None), ok.output
    (tmp_path / "blocker").write_text("a file where a folder should be")
    bad = cli.conf(tmp_path, cniVersion="1.1.0", stateDir=str(tmp_path / "blocker"))
    out = cli.invoke(node, "STATUS", bad)
    assert (out.status, out.code) == (1, 50), out.output
    assert "stateDir" in out.output["msg"]


@pytest.fixture
def bridge(node: str) -> Iterator[str]:
    netns.run(node, ["ip", "link", "add", "pwbr0", "type", "bridge"])
    netns.run(node, ["sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=0"])
    netns.run(node, ["sysctl", "-q", "-w", "net.bridge.bridge-nf-call-ip6tables=0"])
    yield "pwbr0"


def _sysctl(node: str, name: str) -> str:
    return netns.run(node, ["sysctl", "-n", name]).stdout.strip()


def test_bridge_netfilter_is_switched_on(node: str, tmp_path: Path, bridge: str) -> None:
    prev = cli.prev_result(node, V4, V6, host=(bridge, "veth1"))
    out = cli.invoke(node, "ADD", cli.conf(tmp_path, prev))
    assert out.status == 0, out.output
    assert _sysctl(node, "net.bridge.bridge-nf-call-iptables") == "1"
    assert _sysctl(node, "net.bridge.bridge-nf-call-ip6tables") == "1"


class FakeAgent:
    """The agent's side of the fast-path socket, answering with ``reply``."""

    def __init__(self, path: Path, reply: bytes | None) -> None:
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(1)
        self.reply = reply
        self.requests: list[dict[str, str]] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        conn, _ = self.server.accept()
        with conn:
            line = conn.makefile("rb").readline()
            self.requests.append(json.loads(line))
            if self.reply is not None:
                conn.sendall(self.reply)
            else:
                conn.recv(1)  # hold the line open until the client gives up

    def close(self) -> None:
        self.server.close()
        self.thread.join(timeout=5)


@pytest.mark.parametrize(
    ("reply", "warning"),
    [(b'{"ok": true}\n', ""), (b'{"ok": false, "error": "busy"}\n', "busy"), (None, "did not")],
    ids=["ok", "refused", "silent"],
)
def test_agent_fast_path(node: str, tmp_path: Path, reply: bytes | None, warning: str) -> None:
    (tmp_path / "run").mkdir()
    agent = FakeAgent(tmp_path / "run/agent.sock", reply)
    try:
        config = cli.conf(tmp_path, cli.prev_result(node, V4), agentTimeoutMs=300)
        out = cli.invoke(node, "ADD", config)
    finally:
        agent.close()
    assert out.status == 0, out.output
    assert agent.requests == [
        {
            "op": "program",
            "containerID": "c1",
            "ifName": "eth0",
            "podNamespace": "ns1",
            "podName": "pod1",
            "podUID": "uid-1",
        }
    ]
    assert (warning in out.stderr) if warning else out.stderr == ""


@pytest.mark.parametrize(
    ("settings", "present", "absent"),
    [
        ({}, 'default deny until programmed" -j DROP', "REJECT"),
        (
            {"denyAction": "reject"},
            "-j REJECT --reject-with icmp-port-unreachable",
            'programmed" -j DROP',
        ),
        ({"podDefault": "allow"}, "--ctstate INVALID", "default deny"),
    ],
    ids=["deny-drop", "deny-reject", "allow"],
)
def test_pod_default_chains(
    node: str, tmp_path: Path, settings: dict[str, str], present: str, absent: str
) -> None:
    config = cli.conf(tmp_path, cli.prev_result(node, V4), backend="iptables-nft", **settings)
    assert cli.invoke(node, "ADD", config).status == 0
    ingress = names.ingress_chain("c1", "eth0")
    rules = "\n".join(
        line
        for line in cli.save(node, "iptables-nft-save").splitlines()
        if f"-A {ingress} " in line
    )
    assert present in rules
    assert absent not in rules
