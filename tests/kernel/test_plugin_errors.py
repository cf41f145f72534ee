"""Every bad input gets its CNI error code, JSON on stdout, no traceback, and
leaves the kernel and the state folders exactly as they were."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from firewall_lab import netns
from firewall_plugin import names
from tests.kernel import plugin_cli as cli

V4, V6 = "10.23.0.5/24", "fd00:23::5/64"
Case = Callable[[str, Path], cli.Outcome]


def _good(node: str, tmp: Path, **settings: Any) -> dict[str, Any]:
    return cli.conf(tmp, cli.prev_result(node, V4, V6), **settings)


CASES: dict[str, tuple[int, Case]] = {
    "malformed-json": (6, lambda n, t: cli.invoke(n, "ADD", '{"cniVersion": "1.0.0",')),
    "json-not-object": (6, lambda n, t: cli.invoke(n, "ADD", "[1, 2]")),
    "add-without-prev-result": (7, lambda n, t: cli.invoke(n, "ADD", cli.conf(t))),
    "check-without-prev-result": (7, lambda n, t: cli.invoke(n, "CHECK", cli.conf(t))),
    "unknown-cni-version": (1, lambda n, t: cli.invoke(n, "ADD", _good(n, t, cniVersion="9.9.9"))),
    "old-cni-version": (1, lambda n, t: cli.invoke(n, "ADD", _good(n, t, cniVersion="0.2.0"))),
    "check-before-0.4": (1, lambda n, t: cli.invoke(n, "CHECK", _good(n, t, cniVersion="0.3.1"))),
    "gc-before-1.1": (1, lambda n, t: cli.invoke(n, "GC", _good(n, t))),
    "status-before-1.1": (1, lambda n, t: cli.invoke(n, "STATUS", _good(n, t, cniVersion="0.4.0"))),
    "no-command": (4, lambda n, t: cli.invoke(n, "ADD", _good(n, t), drop=("CNI_COMMAND",))),
    "unknown-command": (4, lambda n, t: cli.invoke(n, "REMOVE", _good(n, t))),
    "no-container-id": (
        4,
        lambda n, t: cli.invoke(n, "ADD", _good(n, t), drop=("CNI_CONTAINERID",)),
    ),
    "bad-container-id": (4, lambda n, t: cli.invoke(n, "ADD", _good(n, t), container_id="../x")),
    "no-ifname": (4, lambda n, t: cli.invoke(n, "ADD", _good(n, t), drop=("CNI_IFNAME",))),
    "long-ifname": (4, lambda n, t: cli.invoke(n, "ADD", _good(n, t), ifname="x" * 16)),
    "add-without-netns": (4, lambda n, t: cli.invoke(n, "ADD", _good(n, t), drop=("CNI_NETNS",))),
    "gc-without-cni-path": (
        4,
        lambda n, t: cli.invoke(n, "GC", _good(n, t, cniVersion="1.1.0"), drop=("CNI_PATH",)),
    ),
    "bad-cni-args": (4, lambda n, t: cli.invoke(n, "ADD", _good(n, t), args="K8S_POD_NAME")),
    "unknown-key": (7, lambda n, t: cli.invoke(n, "ADD", _good(n, t, podDefualt="deny"))),
    "ill-typed-key": (7, lambda n, t: cli.invoke(n, "ADD", _good(n, t, markBit="14"))),
    "wrong-type": (7, lambda n, t: cli.invoke(n, "ADD", _good(n, t, type="firewall"))),
    "prev-result-injection": (
        7,
        lambda n, t: cli.invoke(
            n, "ADD", cli.conf(t, cli.prev_result(n, "10.23.0.5/32 -j ACCEPT"))
        ),
    ),
    "prev-result-without-ips": (
        7,
        lambda n, t: cli.invoke(n, "ADD", cli.conf(t, cli.prev_result(n))),
    ),
    "gc-without-attachments": (
        7,
        lambda n, t: cli.invoke(n, "GC", cli.conf(t, cniVersion="1.1.0")),
    ),
    "netns-missing": (
        3,
        lambda n, t: cli.invoke(n, "ADD", _good(n, t), netns_path="/run/netns/pw-no-such-ns"),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input(node_ns: str, tmp_path: Path, case: str) -> None:
    code, run = CASES[case]
    node = cli.prime(node_ns)
    before = cli.snapshot(node, tmp_path)
    out = run(node, tmp_path)
    assert out.status != 0
    assert isinstance(out.output, dict), out.output
    assert set(out.output) == {"cniVersion", "code", "msg", "details"}
    assert out.code == code, out.output
    assert out.output["msg"]
    assert cli.snapshot(node, tmp_path) == before
    assert not (tmp_path / "state").exists()
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_unknown_key_is_named(node_ns: str, tmp_path: Path) -> None:
    out = cli.invoke(node_ns, "ADD", _good(node_ns, tmp_path, podDefualt="deny"))
    assert "podDefualt" in out.output["msg"]


def test_lock_held_means_try_again(node_ns: str, tmp_path: Path) -> None:
    node = cli.prime(node_ns)
    (tmp_path / "run").mkdir()
    before = cli.snapshot(node, tmp_path)
    fd = os.open(tmp_path / "run/podwall.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        before = cli.snapshot(node, tmp_path)
        env = {"PODWALL_LOCK_TIMEOUT_MS": "200"}
        for command in ("ADD", "DEL"):
            out = cli.invoke(node, command, _good(node, tmp_path), env=env)
            assert out.code == 11, out.output
    finally:
        os.close(fd)
    assert cli.snapshot(node, tmp_path) == before
    assert not (tmp_path / "state").exists()


def test_bridge_netfilter_off_and_not_allowed(node_ns: str, tmp_path: Path) -> None:
    node = cli.prime(node_ns)
    netns.run(node, ["ip", "link", "add", "pwbr0", "type", "bridge"])
    netns.run(node, ["sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=0"])
    before = cli.snapshot(node, tmp_path)
    prev = cli.prev_result(node, V4, host=("pwbr0", "veth1"))
    out = cli.invoke(node, "ADD", cli.conf(tmp_path, prev, ensureBridgeNetfilter=False))
    assert out.code == 102, out.output
    assert "bridge-nf-call-iptables" in out.output["msg"]
    assert cli.snapshot(node, tmp_path) == before
    sysctl = ["sysctl", "-n", "net.bridge.bridge-nf-call-iptables"]
    assert netns.run(node, sysctl).stdout.strip() == "0"


def test_failed_add_leaves_no_partial_state(node_ns: str, tmp_path: Path) -> None:
    """IPv4 is written, IPv6 fails in the kernel (a foreign nft base chain holds
    the pod's egress chain name): the whole ADD is rolled back."""
    node = cli.prime(node_ns)
    egress = names.egress_chain("c1", "eth0")
    hook = "{ type filter hook forward priority 5; }"
    netns.run(node, ["nft", "add", "chain", "ip6", "filter", egress, hook])
    before = cli.snapshot(node, tmp_path / "state")
    out = cli.invoke(node, "ADD", _good(node, tmp_path, backend="iptables-nft"))
    assert out.code == 100, out.output
    assert "ip6tables-nft-restore" in out.output["msg"]
    assert cli.snapshot(node, tmp_path / "state") == before  # the run folder keeps its lock file
    assert cli.podwall_lines(node) == []
    assert list((tmp_path / "state/endpoints").iterdir()) == []
    assert out.output["cniVersion"] == "1.0.0"
