"""Lab life cycle: ``down`` after a crash and on a half-built lab leaves
nothing behind; a ptp dual-stack lab routes both families across nodes;
a failed ``up`` cleans up after itself; the stand-in programmer agent;
``up(backend=...)`` puts the backend into every node's conflist entry."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from firewall_lab import netns
from firewall_lab.lab import ops, probing, state, teardown
from firewall_lab.lab.errors import LabError
from firewall_plugin import conflist
from tests.conftest import kernel_ready

CLUSTER = Path(__file__).parent / "conformance" / "cluster.yaml"

pytestmark = pytest.mark.skipif(kernel_ready() is not None, reason=kernel_ready() or "")


def leftovers(prefix: str) -> list[str]:
    return teardown.lab_namespaces(prefix)


def test_down_after_the_lab_process_was_killed(tmp_path: Path) -> None:
    directory = str(tmp_path / "lab")
    recorded = ops.up(directory, nodes=2, agent="programmer")
    layout = recorded.layout(directory)
    ops.apply_docs(directory, ops.documents([str(CLUSTER)])[:5])  # 3 namespaces, 2 pods
    recorded = state.load(directory)
    agents = [pid for role, pid in recorded.pids.items() if role.startswith("agent/")]
    assert leftovers(layout.netns_prefix)
    os.kill(recorded.pids["lab"], signal.SIGKILL)
    time.sleep(0.2)
    removed = teardown.down(directory)
    assert any(line.startswith("netns") for line in removed)
    assert leftovers(layout.netns_prefix) == []
    assert not os.path.exists(directory)
    for pid in agents:
        assert not teardown.ours(pid, directory), f"agent {pid} survived"


def test_down_on_a_half_built_lab(tmp_path: Path) -> None:
    directory = tmp_path / "half"
    directory.mkdir()
    half = state.LabState(lab_id="hb0001", nodes=2)
    layout = half.layout(str(directory))
    recorded_only = netns.create(layout.node_list()[0].netns)
    half.netns.append(recorded_only)
    state.save(str(directory), half)
    unrecorded = netns.create(f"{layout.netns_prefix}p7")  # made, crashed before recording
    (directory / "nodes" / "node-1").mkdir(parents=True)
    try:
        teardown.down(str(directory))
        assert not netns.exists(recorded_only) and not netns.exists(unrecorded)
        assert sorted(os.listdir(directory)) == []  # the folder was not ours: emptied, kept
    finally:
        for name in (recorded_only, unrecorded):
            netns.delete(name)


def test_failed_up_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(LabError, match=r"no such file"):
        ops.up(str(tmp_path / "unread"), files=[str(tmp_path / "missing.yaml")])
    assert not os.path.exists(tmp_path / "unread")
    orphan = tmp_path / "orphan.yaml"
    orphan.write_text("{kind: Pod, apiVersion: v1, metadata: {namespace: nope, name: p}}\n")
    before = set(leftovers("pwl"))
    with pytest.raises(LabError, match=r"nope"):
        ops.up(str(tmp_path / "bad"), files=[str(orphan)], agent="none")
    assert not os.path.exists(tmp_path / "bad")
    assert set(leftovers("pwl")) <= before


def test_ptp_dual_stack_across_nodes_with_the_stand_in_agent(tmp_path: Path) -> None:
    """Also the one lab on iptables-legacy: the backend chosen at ``up``."""
    directory = str(tmp_path / "ptp6")
    recorded = ops.up(
        directory, cni="ptp", ipv6=True, agent="programmer", backend="iptables-legacy"
    )
    try:
        layout = recorded.layout(directory)
        for node in layout.node_list():
            entry = conflist.read_entry(layout.node_dir(node, "net.d")) or {}
            assert entry.get("backend") == "iptables-legacy", entry
        docs = ops.documents([str(CLUSTER)])
        ops.apply_docs(directory, [d for d in docs if d["metadata"].get("namespace", "x") == "x"])
        pods = ops.running_pods(layout)
        assert {pod["node"] for pod in pods.values()} == {"node-1", "node-2"}
        assert all(len(pod["ips"]) == 2 for pod in pods.values()), pods
        for family in ("ipv4", "ipv6"):
            found = probing.kernel_matrix(layout, port=81, protocol="UDP", family=family)
            assert all(all(row.values()) for row in found["reachable"].values()), found
        deny = {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"namespace": "x", "name": "deny"},
            "spec": {"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"]},
        }
        ops.apply_docs(directory, [deny])
        client = ops.client_for(directory)[1]
        for family in ("ipv4", "ipv6"):
            kernel = probing.kernel_matrix(layout, port=80, protocol="SCTP", family=family)
            model = probing.model_matrix(client, port=80, protocol="SCTP", family=family)
            assert probing.differences(kernel, model) == []
            assert kernel["reachable"]["x/b"]["x/a"] is False
        for node in layout.node_list():  # written by the plugin and the stand-in agent
            assert "PODWALL" in netns.run(node.netns, ["iptables-legacy-save"]).stdout
            assert "PODWALL" not in netns.run(node.netns, ["iptables-nft-save"]).stdout
            tables = netns.run(node.netns, ["nft", "list", "tables"]).stdout
            assert "podwall" not in tables, tables
    finally:
        teardown.down(directory)
    assert leftovers(recorded.layout(directory).netns_prefix) == []
