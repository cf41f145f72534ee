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

BACKENDS = {"nftables": "", "iptables-nft": "nft", "iptables-legacy": "legacy", "iptc": "legacy"}
FIRST, EXTRA, DELETED = 50, 10, 25
WORKERS = 50


@pytest.fixture
def node(node_ns: str, tmp_path: Any) -> Node:
    made = Node(node_ns, str(tmp_path))
    batch = [
        f"link add {host(index)} type veth peer name {host(index)}p"
        for index in range(FIRST + EXTRA)
    ]
    netns.run(node_ns, ["ip", "-batch", "-"], input="\n".join(batch) + "\n")
    return made


def host(index: int) -> str:
    return f"vethpw{index}"


def prev_result(index: int, sandbox: str) -> JSON:
    return {
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": host(index), "mac": "02:00:00:00:00:01"},
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


def addresses(index: int, sandbox: str, family: str) -> list[str]:
    return [
        entry["address"].split("/")[0]
        for entry in prev_result(index, sandbox)["ips"]
        if (":" in entry["address"]) == (family == "ipv6")
    ]


def expected_state(node: Node, survivors: list[int], variant: str) -> dict[str, Any]:
    """Chains and dispatch entries (direction, address, chain) podwall must hold."""
    sandbox = netns.path(node.name)
    state: dict[str, Any] = {}
    for family in ("ipv4", "ipv6"):
        chains = set() if not variant else {names.FORWARD_CHAIN, names.INPUT_CHAIN, names.TO_CHAIN}
        dispatch = []
        suffix = "" if variant else f"-{family[-1]}"
        for index in survivors:
            cid = attachment(index, sandbox).container_id
            ingress = names.ingress_chain(cid, "eth0") + suffix
            egress = names.egress_chain(cid, "eth0") + suffix
            chains |= {ingress, egress}
            if variant:
                chains |= {names.from_chain(cid, "eth0"), names.node_chain(cid, "eth0")}
            for address in addresses(index, sandbox, family):
                dispatch += [("from", address, egress), ("to", address, ingress)]
        state[family] = (sorted(chains), sorted(dispatch), 1)
    return state


DISPATCH = re.compile(r"^(-s|-d) (\S+)/\d+ .*-j (PODWALL-[EI]-\S+)$")


def actual_state(node: Node, variant: str) -> dict[str, Any]:
    if not variant:
        return netns.call(node.name, _nft_state)
    state: dict[str, Any] = {}
    for family in ("ipv4", "ipv6"):
        table = node.table(variant, family)
        dispatch = []
        for name, specs in table.chains.items():
            if name != names.TO_CHAIN and not name.startswith(f"{names.PREFIX}-F-"):
                continue
            for spec in specs:
                match = DISPATCH.match(spec)
                if match:
                    flag, address, chain = match.groups()
                    dispatch.append(("from" if flag == "-s" else "to", address, chain))
        jumps = [spec for spec in table.forward if spec.endswith(f"-j {names.FORWARD_CHAIN}")]
        at_top = table.forward[:1] == jumps[:1]
        state[family] = (sorted(table.chains), sorted(dispatch), len(jumps) if at_top else -1)
    return state


def _nft_state() -> dict[str, Any]:
    """The same shape as ``actual_state``, from podwall's nftables table."""
    import ipaddress

    from firewall_plugin.nft import kernel, layout
    from firewall_plugin.nft import netlink as nl

    state: dict[str, Any] = {}
    with nl.Netlink() as sock:
        chains = [name for name in kernel.chains(sock) if name.startswith(names.PREFIX)]
        for family, suffix in (("ipv4", "4"), ("ipv6", "6")):
            dispatch = []
            for direction in ("from", "to"):
                for element in kernel.elements(sock, layout.INET, f"{direction}{suffix}"):
                    address = ipaddress.ip_address(element.key[16:])
                    if address.is_link_local:
                        continue
                    assert element.verdict is not None
                    dispatch.append((direction, str(address), element.verdict[1]))
            mine = sorted(name for name in chains if name.endswith(f"-{suffix}"))
            state[family] = (mine, sorted(dispatch), 1)
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
    variant = BACKENDS[backend]
    assert actual_state(node, variant) == expected_state(node, list(range(FIRST)), variant)

    deleted = list(range(0, 2 * DELETED, 2))
    added = list(range(FIRST, FIRST + EXTRA))
    jobs = [(delete, index) for index in deleted] + [(add, index) for index in added]
    cni_helpers.parallel(lambda job: job[0](job[1]), jobs, workers=WORKERS)
    survivors = sorted(set(range(FIRST + EXTRA)) - set(deleted))
    assert actual_state(node, variant) == expected_state(node, survivors, variant)
    records = node.trace()
    assert sorted(r for r in records if r.startswith("record: ")) == [
        f"record: {attachment(index, sandbox).container_id}_eth0.json" for index in survivors
    ]
    # (DEL of the survivors is left to the node netns teardown: ADD → DEL
    # leaving no trace is test_chain_integration's job, and time is short.)
