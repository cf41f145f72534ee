"""Conformance with the ptp primary (IPv4): a quick subset by default, every
case with ``-m conformance_full``.  This lab runs the iptables-nft data plane
(the bridge and dual-stack labs run ``auto``: nftables), so the conformance
covers both."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conformance import harness

QUICK = {
    "default-deny-all",
    "podselector-and-namespaceselector",
    "named-port-egress",
    "updated-namespace",
    "updated-pod",
    "egress-cidr-except",
    "udp-ports",
    "sctp-pod-in-other-namespace",
    "admin-deny-overrides-netpol-allow",
    "baseline-deny-under-netpol",
}
CASES = harness.load_cases("netpol.yaml") + harness.load_cases("fwrule.yaml")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.ConformanceLab]:
    yield from harness.running_lab(
        tmp_path_factory, "ptp", cni="ptp", ipv6=False, backend="iptables-nft"
    )


@pytest.mark.parametrize("case", harness.marked(CASES, QUICK))
def test_case(lab: harness.ConformanceLab, case: dict[str, Any]) -> None:
    lab.reset()
    failures = lab.run_case(case)
    assert not failures, f"{case['it']}\n" + "\n".join(failures)
