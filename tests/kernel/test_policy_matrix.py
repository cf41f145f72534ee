"""Kernel vs model: the probed reachability matrix must equal ``evaluate.matrix``.

Nine dual-stack pods (x/a … z/c) are wired once per module and data plane
through the real CNI chain (bridge + host-local + podwall); each scenario of
``tests/kernel/scenarios/*.yaml`` only swaps the policies: compile for the
node's endpoint records, apply, probe every pod pair in IPv4 and IPv6, and
compare with the evaluator.  Scenario files hold ``description``, ``probes``
(``PORT/PROTOCOL``), optional extra ``namespaces``/``pods`` labels and the
policy ``objects``.

Both data planes (``nftables`` and ``iptables-nft``) run every scenario, one
family each, alternating, so the suite pays for a second lab and not for a
second copy of every probe; ``PODWALL_TEST_BACKEND=<backend>`` runs it all on
one backend.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from firewall_plugin import model
from tests.conftest import kernel_ready
from tests.kernel import policy_lab

SCENARIOS = sorted((Path(__file__).parent / "scenarios").glob("*.yaml"))
ONLY = os.environ.get("PODWALL_TEST_BACKEND")
BACKENDS = (ONLY,) if ONLY else ("nftables", "iptables-nft")
FAMILIES: tuple[model.Family, ...] = ("ipv4", "ipv6")


def load(path: Path) -> dict[str, Any]:
    with path.open() as handle:
        data: dict[str, Any] = yaml.safe_load(handle)
    return data


@pytest.fixture(scope="module")
def labs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[policy_lab.Labs]:
    if kernel_ready() is not None:
        pytest.skip(kernel_ready() or "")
    made = policy_lab.Labs(lambda backend: str(tmp_path_factory.mktemp(f"policylab-{backend}")))
    try:
        yield made
    finally:
        made.stop()


def split(index: int) -> list[Any]:
    """(family, backend) params: each family on one backend, alternating with ``index``."""
    return [
        pytest.param(family, BACKENDS[(index + turn) % len(BACKENDS)],
                     id=f"{family}-{BACKENDS[(index + turn) % len(BACKENDS)]}")
        for turn, family in enumerate(FAMILIES)
    ]  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
def test_addresses_follow_pod_order(labs: policy_lab.Labs, backend: str) -> None:
    """Scenarios with ipBlocks rely on host-local handing out .2, .3, ... in order."""
    for index, pod in enumerate(labs.get(backend).pods.values(), start=2):
        assert pod.ips == (f"10.244.1.{index}", f"fd00:244:1::{index:x}"), pod.key


def check(
    lab: policy_lab.PolicyLab,
    scenario: dict[str, Any],
    family: model.Family,
    *,
    pod_labels: Any = None,
) -> None:
    docs = lab.documents(
        namespace_labels=scenario.get("namespaces"),
        pod_labels=pod_labels if pod_labels is not None else scenario.get("pods"),
    )
    docs += scenario.get("objects") or []
    compiled = lab.program(docs)
    assert not compiled.unmatched, f"endpoints without a pod: {compiled.unmatched}"
    failures = []
    for spec in scenario.get("probes") or ["80/TCP"]:
        port_text, protocol = spec.split("/")
        port = int(port_text)
        kernel = lab.kernel_matrix(port=port, protocol=protocol, family=family)
        expected = policy_lab.model_matrix(docs, port=port, protocol=protocol, family=family)
        wrong = policy_lab.differences(kernel, expected)
        if wrong:
            failures.append(
                f"{spec} {family}: {len(wrong)} pairs differ\n"
                + "\n".join(wrong)
                + f"\nkernel:\n{policy_lab.render_table(kernel)}"
                + f"\nmodel:\n{policy_lab.render_table(expected)}"
            )
    assert not failures, "\n\n".join(failures)


SCENARIO_CASES = [
    pytest.param(path, *case.values, id=f"{path.stem}-{case.id}")
    for index, path in enumerate(SCENARIOS)
    for case in split(index)
]


@pytest.mark.parametrize(("path", "family", "backend"), SCENARIO_CASES)
def test_scenario(labs: policy_lab.Labs, path: Path, family: model.Family, backend: str) -> None:
    check(labs.get(backend), load(path), family)


@pytest.mark.parametrize(("family", "backend"), split(0))
def test_label_change_moves_a_pod_out_of_a_policy(
    labs: policy_lab.Labs, family: model.Family, backend: str
) -> None:
    """Same policies, one pod relabelled: only the model's inputs change."""
    scenario = load(Path(__file__).parent / "scenarios" / "04-pod-and-namespace-selector.yaml")
    pod_labels = {"z/b": {"pod": "q"}, "x/c": {"pod": "q"}}
    check(labs.get(backend), scenario, family, pod_labels=pod_labels)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ipv6_reaches_pods_isolated_for_egress(labs: policy_lab.Labs, backend: str) -> None:
    """z may send nothing; the others must still reach z over IPv6 (replies
    are allowed), which needs z's neighbour advertisements to pass."""
    policy = {
        "kind": "NetworkPolicy",
        "metadata": {"namespace": "z", "name": "no-egress"},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"]},
    }
    check(labs.get(backend), {"probes": ["80/TCP"], "objects": [policy]}, "ipv6")
