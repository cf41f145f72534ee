"""Kernel vs model: the probed reachability matrix must equal ``evaluate.matrix``.

Nine dual-stack pods (x/a … z/c) are wired once per module through the real
CNI chain (bridge + host-local + podwall); each scenario of
``tests/kernel/scenarios/*.yaml`` only swaps the policies: compile for the
node's endpoint records, apply, probe every pod pair in IPv4 and IPv6, and
compare with the evaluator.  Scenario files hold ``description``, ``probes``
(``PORT/PROTOCOL``), optional extra ``namespaces``/``pods`` labels and the
policy ``objects``.
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
BACKEND = os.environ.get("PODWALL_TEST_BACKEND", "iptables-nft")


def load(path: Path) -> dict[str, Any]:
    with path.open() as handle:
        data: dict[str, Any] = yaml.safe_load(handle)
    return data


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[policy_lab.PolicyLab]:
    if kernel_ready() is not None:
        pytest.skip(kernel_ready() or "")
    the = policy_lab.PolicyLab(str(tmp_path_factory.mktemp("policylab")), BACKEND)
    try:
        the.start()
        yield the
    finally:
        the.stop()


def test_addresses_follow_pod_order(lab: policy_lab.PolicyLab) -> None:
    """Scenarios with ipBlocks rely on host-local handing out .2, .3, ... in order."""
    for index, pod in enumerate(lab.pods.values(), start=2):
        assert pod.ips == (f"10.244.1.{index}", f"fd00:244:1::{index:x}"), pod.key


FAMILY_PARAMS = [pytest.param("ipv4", id="ipv4"), pytest.param("ipv6", id="ipv6")]


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


@pytest.mark.parametrize("family", FAMILY_PARAMS)
@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario(lab: policy_lab.PolicyLab, path: Path, family: model.Family) -> None:
    check(lab, load(path), family)


@pytest.mark.parametrize("family", FAMILY_PARAMS)
def test_label_change_moves_a_pod_out_of_a_policy(
    lab: policy_lab.PolicyLab, family: model.Family
) -> None:
    """Same policies, one pod relabelled: only the model's inputs change."""
    scenario = load(Path(__file__).parent / "scenarios" / "04-pod-and-namespace-selector.yaml")
    check(lab, scenario, family, pod_labels={"z/b": {"pod": "q"}, "x/c": {"pod": "q"}})


def test_ipv6_reaches_pods_isolated_for_egress(lab: policy_lab.PolicyLab) -> None:
    """z may send nothing; the others must still reach z over IPv6 (replies
    are allowed), which needs z's neighbour advertisements to pass."""
    policy = {
        "kind": "NetworkPolicy",
        "metadata": {"namespace": "z", "name": "no-egress"},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"]},
    }
    check(lab, {"probes": ["80/TCP"], "objects": [policy]}, "ipv6")
