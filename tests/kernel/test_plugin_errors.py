"""Every bad input gets its CNI error code, JSON on stdout, no traceback, and
leaves the kernel and the state folders exactly as they were."""

from __future__ import annotations

import fcntl
import json
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


# --- the plugin trusts nothing: hostile prevResults, records and neighbours ----------

HOSTILE_ADDRESSES = {
    "unspecified": "0.0.0.0/24",
    "loopback": "127.0.0.1/8",
    "multicast": "224.0.0.1/32",
    "broadcast": "255.255.255.255/32",
    "subnet-broadcast": "10.23.0.255/24",
    "ipv4-link-local": "169.254.1.1/16",
    "ipv6-loopback": "::1/128",
    "ipv6-link-local": "fe80::5/64",
    "ipv6-multicast": "ff02::1/128",
}
BACKENDS = ("nftables", "iptables-nft")


@pytest.fixture
def neighbour(node_ns: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[str, str]:
    """A node holding one well-behaved pod ``ok``; (node, backend)."""
    backend: str = request.param
    node = cli.prime(node_ns)
    good = cli.conf(tmp_path, cli.prev_result(node, "10.23.0.9/24"), backend=backend)
    assert cli.invoke(node, "ADD", good, container_id="ok").status == 0
    return node, backend


def _ok_still_checks(node: str, tmp: Path, backend: str) -> None:
    good = cli.conf(tmp, cli.prev_result(node, "10.23.0.9/24"), backend=backend)
    out = cli.invoke(node, "CHECK", good, container_id="ok")
    assert out.status == 0, out.output


@pytest.mark.parametrize("neighbour", BACKENDS, indirect=True)
@pytest.mark.parametrize("address", HOSTILE_ADDRESSES.values(), ids=HOSTILE_ADDRESSES.keys())
def test_addresses_no_pod_can_own_are_refused(
    neighbour: tuple[str, str], tmp_path: Path, address: str
) -> None:
    node, backend = neighbour
    before = cli.snapshot(node, tmp_path)
    bad = cli.conf(tmp_path, cli.prev_result(node, address), backend=backend)
    out = cli.invoke(node, "ADD", bad, container_id="evil")
    assert out.code == 7, out.output
    assert "no pod can own it" in out.output["msg"]
    assert cli.snapshot(node, tmp_path) == before
    _ok_still_checks(node, tmp_path, backend)


@pytest.mark.parametrize("neighbour", BACKENDS, indirect=True)
def test_an_address_another_pod_holds_is_refused(
    neighbour: tuple[str, str], tmp_path: Path
) -> None:
    node, backend = neighbour
    before = cli.snapshot(node, tmp_path)
    thief = cli.conf(tmp_path, cli.prev_result(node, "10.23.0.9/24", host=("pvthief",)))
    thief["backend"] = backend
    out = cli.invoke(node, "ADD", thief, container_id="thief")
    assert out.code == 7, out.output
    assert "already held by ns1/pod1 (ok/eth0)" in out.output["msg"]
    assert cli.snapshot(node, tmp_path) == before
    _ok_still_checks(node, tmp_path, backend)


@pytest.mark.parametrize("neighbour", BACKENDS, indirect=True)
def test_a_prev_result_without_host_interface_is_refused(
    neighbour: tuple[str, str], tmp_path: Path
) -> None:
    node, backend = neighbour
    before = cli.snapshot(node, tmp_path)
    bad = cli.conf(tmp_path, cli.prev_result(node, V4, host=()), backend=backend)
    out = cli.invoke(node, "ADD", bad, container_id="ghost")
    assert out.code == 7, out.output
    assert "host-side interface" in out.output["msg"]
    assert cli.snapshot(node, tmp_path) == before


HOSTILE_RECORDS = {
    "injected-interface": {"hostInterface": "veth9 -j ACCEPT"},
    "injected-address": {"ips": ["10.23.0.77/32 -j ACCEPT"]},
    "not-an-address": {"ips": ["not-an-ip"]},
    "foreign-chain-names": {"ingressChain": "FORWARD", "egressChain": "INPUT"},
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fields", HOSTILE_RECORDS.values(), ids=HOSTILE_RECORDS.keys())
def test_hostile_record_files_never_reach_the_kernel(
    node_ns: str, tmp_path: Path, backend: str, fields: dict[str, Any]
) -> None:
    node = cli.prime(node_ns)
    folder = tmp_path / "state/endpoints"
    folder.mkdir(parents=True)
    record = {
        "containerID": "planted",
        "ifName": "eth0",
        "podNamespace": "x",
        "podName": "planted",
        "ips": ["10.23.0.70/24"],
        "hostInterface": "veth9",
        **fields,
    }
    (folder / "planted_eth0.json").write_text(json.dumps(record))
    good = cli.conf(tmp_path, cli.prev_result(node, V4), backend=backend)
    out = cli.invoke(node, "ADD", good, container_id="ok")
    assert out.status == 0, out.output
    text = cli.kernel_text(node, backend)
    assert "veth9 -j" not in text
    assert "-j ACCEPT" not in "\n".join(line for line in text.splitlines() if "PODWALL" in line)
    assert "10.23.0.77" not in text
    if "ingressChain" in fields:  # a valid record: its chains are recomputed, never read
        assert names.ingress_chain("planted", "eth0") in text
    assert cli.invoke(node, "CHECK", good, container_id="ok").status == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_container_ids_and_ifnames_with_underscores_never_collide(
    node_ns: str, tmp_path: Path, backend: str
) -> None:
    node = cli.prime(node_ns)
    first = cli.conf(tmp_path, cli.prev_result(node, "10.23.0.11/24"), backend=backend)
    second = cli.conf(tmp_path, cli.prev_result(node, "10.23.0.12/24"), backend=backend)
    assert cli.invoke(node, "ADD", first, container_id="a_b", ifname="c").status == 0
    assert cli.invoke(node, "ADD", second, container_id="a", ifname="b_c").status == 0
    records = sorted(p.name for p in (tmp_path / "state/endpoints").iterdir())
    assert records == ["a%5Fb_c.json", "a_b%5Fc.json"]
    for cid, ifname, config in (("a_b", "c", first), ("a", "b_c", second)):
        out = cli.invoke(node, "CHECK", config, container_id=cid, ifname=ifname)
        assert out.status == 0, out.output
    assert cli.invoke(node, "DEL", first, container_id="a_b", ifname="c").status == 0
    out = cli.invoke(node, "CHECK", second, container_id="a", ifname="b_c")
    assert out.status == 0, out.output


@pytest.mark.parametrize("neighbour", BACKENDS, indirect=True)
def test_a_second_state_dir_on_the_node_is_refused(
    neighbour: tuple[str, str], tmp_path: Path
) -> None:
    node, backend = neighbour
    other = tmp_path / "other"
    before = cli.snapshot(node, tmp_path / "state")
    config = cli.conf(other, cli.prev_result(node, "10.23.0.30/24"), backend=backend)
    out = cli.invoke(node, "ADD", config, container_id="second")
    assert out.code == 7, out.output
    assert "use one stateDir per node" in out.output["msg"]
    assert cli.snapshot(node, tmp_path / "state") == before
    assert not list((other / "state/endpoints").glob("*.json"))
    _ok_still_checks(node, tmp_path, backend)
