"""The compiler and ``evaluate`` agree: for every semantics table case, every
pod pair and a set of ports, walking the compiled chains of each node (with
``pw_walker``) gives the verdict ``evaluate`` gives for that node's sides."""

from __future__ import annotations

from typing import Any

import pytest

from firewall_operator import cluster, compiler, evaluate
from firewall_plugin import model
from tests.unit import test_fwrule_semantics, test_netpol_semantics
from tests.unit.pw_policy import snapshot
from tests.unit.pw_walker import forward
from tests.unit.test_compiler import records_for

PORTS = [
    (80, "TCP"),
    (8080, "TCP"),
    (53, "UDP"),
    (53, "TCP"),
    (9000, "SCTP"),
    (8500, "TCP"),
    (1500, "UDP"),
]
NODES = ("n1", "n2")

CASES: dict[str, list[dict[str, Any]]] = {
    **{f"np-{k}": v.policies for k, v in test_netpol_semantics.CASES.items()},
    **{f"fw-{k}": v.objects for k, v in test_fwrule_semantics.CASES.items()},
}


def disagreements(snap: cluster.Snapshot, family: model.Family) -> list[str]:
    evaluator = evaluate.Evaluator(snap, family=family)
    states = {
        node: compiler.compile_node(evaluator.planner, records_for(snap, node)) for node in NODES
    }
    found = []
    pods = [p for p in snap.pods if not p.host_network and p.ip(family)]
    for src in pods:
        for dst in pods:
            if src.key == dst.key:
                continue
            for port, proto in PORTS:
                verdict = evaluator.verdict(src, dst, port, proto)
                want = {src.node: verdict.egress.allowed}
                want[dst.node] = want.get(dst.node, True) and verdict.ingress.allowed
                for node, allowed in want.items():
                    got = forward(
                        states[node],
                        family,
                        src=str(src.ip(family)),
                        dst=str(dst.ip(family)),
                        proto=proto.lower(),
                        port=port,
                    )
                    if got != allowed:
                        found.append(
                            f"{node}: {src.key}->{dst.key} {port}/{proto} "
                            f"kernel {got} evaluate {allowed}"
                        )
    return found


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
@pytest.mark.parametrize("objects", CASES.values(), ids=CASES.keys())
def test_compiled_chains_agree_with_evaluate(objects: list[dict[str, Any]], family: Any) -> None:
    assert disagreements(snapshot(*objects), family) == []
