"""The lab's "has this node programmed it?" check reads the node's backend.

``firewall_lab.lab.programmed`` compiles what a node should hold and compares
it with the kernel (for agents that do not report
``observedResourceVersion``).  A node whose conflist entry says ``nftables``
(or ``auto``, which picks it here) is compared through ``NftApplier``: the
state the agent's writer left is "programmed", and a chain someone flushed
is named.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from firewall_lab import netns
from firewall_lab.lab import programmed
from firewall_operator import cluster, compiler
from firewall_operator.nft_applier import NftApplier
from firewall_plugin import endpoints

IP = "10.71.0.2"


def docs() -> list[dict[str, Any]]:
    pod = {"namespace": "x", "name": "a", "uid": "u-a", "labels": {}}
    return [
        {"kind": "Namespace", "metadata": {"name": "x", "labels": {}}},
        {"kind": "Pod", "metadata": pod, "spec": {"nodeName": "n"},
         "status": {"phase": "Running", "podIPs": [{"ip": IP}]}},
        {"kind": "NetworkPolicy", "metadata": {"namespace": "x", "name": "deny"},
         "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}},
    ]  # fmt: skip


def node_dir(tmp_path: Path, backend: str) -> str:
    conf = tmp_path / "net.d"
    conf.mkdir()
    entry = {"type": "podwall", "backend": backend, "stateDir": str(tmp_path / "state"),
             "runDir": str(tmp_path / "run")}  # fmt: skip
    plugins = [{"type": "bridge", "bridge": "cni0"}, entry]
    network = {"cniVersion": "1.0.0", "name": "n", "plugins": plugins}
    (conf / "10-n.conflist").write_text(json.dumps(network))
    record = endpoints.EndpointRecord.make(
        container_id="c-a", ifname="eth0", podNamespace="x", podName="a", podUID="u-a",
        ips=(f"{IP}/24",), hostInterface="vetha",
    )  # fmt: skip
    endpoints.write(str(tmp_path / "state"), record)
    return str(conf)


def program_then_check(tmp: str, conf: str) -> tuple[list[str], list[str]]:
    state = compiler.compile_node(
        cluster.Snapshot.from_documents(docs()), list(endpoints.read_all(f"{tmp}/state"))
    )
    NftApplier(run_dir=f"{tmp}/run", state_dir=f"{tmp}/state").apply(
        state.families, endpoints=state.endpoints
    )
    clean = programmed._inside(docs(), conf)
    chain = sorted(state.families["ipv4"].chains)[0]
    subprocess.run(["nft", "flush", "chain", "inet", "podwall", f"{chain}-4"], check=True)
    return clean, programmed._inside(docs(), conf)


@pytest.mark.parametrize("backend", ["nftables", "auto"])
def test_an_nftables_node_is_checked_through_its_tables(
    node_ns: str, tmp_path: Path, backend: str
) -> None:
    conf = node_dir(tmp_path, backend)
    clean, drifted = netns.call(node_ns, program_then_check, str(tmp_path), conf)
    assert clean == []
    assert drifted and all("differs" in line for line in drifted), drifted
