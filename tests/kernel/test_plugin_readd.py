"""ADD of an attachment that exists already, with another identity; writes
that fail change nothing.  (Found by the fuzzer: ``test_plugin_fuzz.py``.)

* A second ADD of an attachment with other addresses, another host
  interface, one family fewer, replaces the first one's identity in the
  kernel: nothing of the old one is left to make a later DEL fail ("Device or
  resource busy": a map element or a chain of the dropped family still
  jumping to the pod's chains).
* A DEL whose kernel write fails keeps the record (the runtime retries DEL).
* An ADD whose kernel write fails over an existing attachment puts the
  previous record and state back instead of removing the pod.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from firewall_lab import netns
from firewall_plugin import names
from tests.kernel import plugin_cli as cli

OTHER = ("10.41.0.4/24", "fd00:41::4/64")
FIRST = ("10.41.0.5/24", "fd00:41::5/64")
SECOND = ("10.41.0.6/24",)
BACKENDS = ("nftables", "iptables-nft", "iptables-legacy", "iptc")


def add(node: str, tmp: Path, ips: tuple[str, ...], backend: str, container: str) -> cli.Outcome:
    config = cli.conf(tmp, cli.prev_result(node, *ips), backend=backend, agentTimeoutMs=0)
    return cli.invoke(node, "ADD", config, container_id=container)


def delete(node: str, tmp: Path, backend: str, container: str) -> cli.Outcome:
    return cli.invoke(node, "DEL", cli.conf(tmp, backend=backend), container_id=container)


@pytest.mark.parametrize("backend", BACKENDS)
def test_second_add_with_other_identity_replaces_the_first(
    node_ns: str, tmp_path: Path, backend: str
) -> None:
    node = cli.prime(node_ns)
    assert add(node, tmp_path, OTHER, backend, "c0").status == 0
    assert add(node, tmp_path, FIRST, backend, "c1").status == 0
    again = add(node, tmp_path, SECOND, backend, "c1")  # other IP and veth, no IPv6
    assert again.status == 0, again.output
    text = cli.kernel_text(node, backend)
    assert "10.41.0.6" in text
    assert "10.41.0.5" not in text and "fd00:41::5" not in text, text
    for container in ("c1", "c0"):
        gone = delete(node, tmp_path, backend, container)
        assert gone.status == 0, gone.output
    assert cli.podwall_lines(node) == []


def foreign_jump(node: str, backend: str, chain: str) -> list[str]:
    """A rule of another tool that jumps to ``chain`` (so it cannot be
    deleted); returns the command that removes it again."""
    if backend == "nftables":
        rule = ["inet", "podwall", "input", "meta", "mark", "0x99", "jump", f"{chain}-4"]
        netns.run(node, ["nft", "add", "rule", *rule])
        handle = netns.run(node, ["nft", "-a", "list", "chain", "inet", "podwall", "input"])
        number = next(line for line in handle.stdout.splitlines() if "0x00000099" in line)
        return ["nft", "delete", "rule", "inet", "podwall", "input", "handle", number.split()[-1]]
    spec = ["FORWARD", "-m", "mark", "--mark", "0x99", "-j", chain]
    for tool in ("iptables-nft", "ip6tables-nft"):  # each family is its own transaction
        netns.run(node, [tool, "-A", *spec])
    return ["sh", "-c", f"iptables-nft -D {' '.join(spec)}; ip6tables-nft -D {' '.join(spec)}"]


@pytest.mark.parametrize("backend", ["nftables", "iptables-nft"])
def test_failed_del_keeps_the_record(node_ns: str, tmp_path: Path, backend: str) -> None:
    node = cli.prime(node_ns)
    assert add(node, tmp_path, OTHER, backend, "c0").status == 0
    assert add(node, tmp_path, FIRST, backend, "c1").status == 0
    undo = foreign_jump(node, backend, names.ingress_chain("c1", "eth0"))
    before = cli.snapshot(node, tmp_path / "state")
    failed = delete(node, tmp_path, backend, "c1")
    assert failed.status == 1, failed.output
    assert cli.snapshot(node, tmp_path / "state") == before, "a failed DEL changed the node"
    netns.run(node, undo)
    assert delete(node, tmp_path, backend, "c1").status == 0
    assert delete(node, tmp_path, backend, "c0").status == 0
    assert cli.podwall_lines(node) == []


def break_next_write(node: str, backend: str) -> None:
    """Make the kernel refuse the second ADD (see the test): a rule of
    another tool jumps to the IPv6 ingress chain the second ADD deletes (with
    iptables only the IPv6 half fails: each family is its own transaction)."""
    chain = names.ingress_chain("c1", "eth0")
    if backend == "nftables":
        rule = ["inet", "podwall", "input", "meta", "mark", "0x99", "jump", f"{chain}-6"]
        netns.run(node, ["nft", "add", "rule", *rule])
    else:
        netns.run(node, ["ip6tables-nft", "-A", "FORWARD", "-m", "mark", "--mark", "0x99",
                         "-j", chain])  # fmt: skip


@pytest.mark.parametrize("backend", ["nftables", "iptables-nft"])
def test_failed_second_add_keeps_the_first(node_ns: str, tmp_path: Path, backend: str) -> None:
    """The second ADD drops IPv6; the kernel refuses it: the first record and
    state are back as they were (iptables: IPv4 written again)."""
    node = cli.prime(node_ns)
    assert add(node, tmp_path, FIRST, backend, "c1").status == 0
    cli.prev_result(node, *SECOND)  # its veth exists before the snapshot
    break_next_write(node, backend)
    before = cli.snapshot(node, tmp_path / "state")
    failed = add(node, tmp_path, SECOND, backend, "c1")
    assert failed.status == 1, failed.output
    assert cli.snapshot(node, tmp_path / "state") == before, "a failed ADD changed the node"


@pytest.mark.parametrize("backend", BACKENDS)
def test_last_del_also_removes_chains_without_a_record(
    node_ns: str, tmp_path: Path, backend: str
) -> None:
    """A pod's record deleted by hand leaves its chains hanging on the
    dispatch; when the last pod goes, they go too (they would keep
    PODWALL-TO busy and fail that DEL)."""
    node = cli.prime(node_ns)
    assert add(node, tmp_path, OTHER, backend, "c0").status == 0
    assert add(node, tmp_path, FIRST, backend, "c1").status == 0
    (tmp_path / "state/endpoints/c1_eth0.json").unlink()
    gone = delete(node, tmp_path, backend, "c0")
    assert gone.status == 0, gone.output
    assert cli.podwall_lines(node) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_add_reusing_the_address_of_a_pod_without_record(
    node_ns: str, tmp_path: Path, backend: str
) -> None:
    """A pod's record deleted by hand leaves its dispatch in the kernel; a
    new pod with the same address and interface (an IP reused) is added,
    and its dispatch leads to its own chains."""
    node = cli.prime(node_ns)
    assert add(node, tmp_path, OTHER, backend, "c0").status == 0
    assert add(node, tmp_path, FIRST, backend, "c1").status == 0
    (tmp_path / "state/endpoints/c1_eth0.json").unlink()
    again = add(node, tmp_path, FIRST, backend, "c2")
    assert again.status == 0, again.output
    text = cli.kernel_text(node, backend)
    mine, old = names.ingress_chain("c2", "eth0"), names.ingress_chain("c1", "eth0")
    dispatch = [line for line in text.splitlines() if "10.41.0.5" in line and "PODWALL-I-" in line]
    assert dispatch and all(mine in line and old not in line for line in dispatch), dispatch
    for container in ("c2", "c0"):
        assert delete(node, tmp_path, backend, container).status == 0
    assert cli.podwall_lines(node) == []


def test_repair_of_a_record_whose_key_a_stale_element_holds(node_ns: str, tmp_path: Path) -> None:
    """nftables: pod c1's record is gone and its address reused by c2, whose
    plugin died before its kernel write (its record alone); the next ADD
    repairs c2 although c1's stale element holds the same key."""
    node = cli.prime(node_ns)
    assert add(node, tmp_path, FIRST, "nftables", "c1").status == 0
    folder = tmp_path / "state/endpoints"
    record = json.loads((folder / "c1_eth0.json").read_text())
    record["containerID"] = "c2"
    (folder / "c2_eth0.json").write_text(json.dumps(record))
    (folder / "c1_eth0.json").unlink()
    done = add(node, tmp_path, OTHER, "nftables", "c0")
    assert done.status == 0, done.output
    text = cli.kernel_text(node, "nftables")
    mine = names.ingress_chain("c2", "eth0")
    assert f"10.41.0.5 : jump {mine}-4" in text, text
