"""Many podwall plugin processes at once: no lost or doubled update.

podwall runs alone in the conflist, each attachment with a hand-made
dual-stack ``prevResult`` (no pod namespaces: the rules do not need them), so
the test measures podwall's locking, not the primary CNI.  50 ADDs run
concurrently, then 25 DELs concurrently with 10 more ADDs; the kernel must
then hold exactly the survivors' chains, dispatch rules and endpoint records,
once each, with one FORWARD jump at the top, for every backend.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from firewall_lab import netns
from firewall_lab.cni_conf import JSON, Attachment
from firewall_plugin import names
from tests.kernel import cni_helpers
from tests.kernel.cni_helpers import Node

BACKENDS = {"iptables-nft": "nft", "iptables-legacy": "legacy", "iptc": "legacy"}
FIRST, EXTRA, DELETED = 50, 10, 25
WORKERS = 50


@pytest.fixture
def node(node_ns: str, tmp_path: Any) -> Node:
    return Node(node_ns, str(tmp_path))


def prev_result(index: int, sandbox: str) -> JSON:
    return {
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": f"vethpw{index}", "mac": "02:00:00:00:00:01"},
            {"name": "eth0", "mac": "02:00:00:00:00:02", "sandbox": sandbox},
        ],
        "ips": [
            {"interface": 1, "address": f"10.77.{index // 200}.{index % 200 + 2}/16"},
            {"interface": 1, "address": f"fd00:77::{index + 2:x}/64"},
        ],
    }


def attachment(index: int, sandbox: str) -> Attachment:
    return Attachment(
        container_id=f"concurrent{index:03d}",
        netns=sandbox,
        args={"K8S_POD_NAMESPACE": "load", "K8S_POD_NAME": f"pod-{index}"},
    )


def expected_state(node: Node, survivors: list[int]) -> dict[str, Any]:
    """Chains and dispatch rules (flag, address, chain) podwall must hold."""
    sandbox = netns.path(node.name)
    state: dict[str, Any] = {}
    for family in ("ipv4", "ipv6"):
        chains = {names.FORWARD_CHAIN}
        dispatch = []
        for index in survivors:
            ingress = names.ingress_chain(attachment(index, sandbox).container_id, "eth0")
            egress = names.egress_chain(attachment(index, sandbox).container_id, "eth0")
            chains |= {ingress, egress}
            for entry in prev_result(index, sandbox)["ips"]:
                address = entry["address"].split("/")[0]
                if (":" in address) != (family == "ipv6"):
                    continue
                width = 128 if family == "ipv6" else 32
                dispatch += [
                    ("-s", f"{address}/{width}", egress),
                    ("-d", f"{address}/{width}", ingress),
                ]
        state[family] = (sorted(chains), sorted(dispatch), 1)
    return state


DISPATCH = re.compile(r"^(-s|-d) (\S+) .*-j (PODWALL-[EI]-\S+)$")


def actual_state(node: Node, variant: str) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for family in ("ipv4", "ipv6"):
        table = node.table(variant, family)
        dispatch = []
        for spec in table.chains.get(names.FORWARD_CHAIN, []):
            match = DISPATCH.match(spec)
            if match:
                dispatch.append(match.groups())
        jumps = [spec for spec in table.forward if spec.endswith(f"-j {names.FORWARD_CHAIN}")]
        at_top = table.forward[:1] == jumps[:1]
        state[family] = (sorted(table.chains), sorted(dispatch), len(jumps) if at_top else -1)
    return state


@pytest.mark.parametrize("backend", BACKENDS, ids=BACKENDS)
def test_concurrent_add_del_end_in_exact_state(node: Node, backend: str) -> None:
    net = cni_helpers.conflist([node.podwall(backend=backend)])
    sandbox = netns.path(node.name)

    def add(index: int) -> None:
        node.runner.add(net, attachment(index, sandbox), prev_result=prev_result(index, sandbox))

    def delete(index: int) -> None:
        node.runner.delete(net, attachment(index, sandbox))

    cni_helpers.parallel(add, range(FIRST), workers=WORKERS)
    assert actual_state(node, BACKENDS[backend]) == expected_state(node, list(range(FIRST)))

    deleted = list(range(0, 2 * DELETED, 2))
    added = list(range(FIRST, FIRST + EXTRA))
    jobs = [(delete, index) for index in deleted] + [(add, index) for index in added]
    cni_helpers.parallel(lambda job: job[0](job[1]), jobs, workers=WORKERS)
    survivors = sorted(set(range(FIRST + EXTRA)) - set(deleted))
    assert actual_state(node, BACKENDS[backend]) == expected_state(node, survivors)
    records = node.trace()
    assert sorted(r for r in records if r.startswith("record: ")) == [
        f"record: {attachment(index, sandbox).container_id}_eth0.json" for index in survivors
    ]
    # (DEL of the survivors is left to the node netns teardown: ADD → DEL
    # leaving no trace is test_chain_integration's job, and time is short.)
