"""Conformance with the ptp primary (IPv4): a quick subset by default, every
case with ``-m conformance_full``.  This lab runs the iptables-nft data plane
(the bridge and dual-stack labs run ``auto``: nftables), so the conformance
covers both."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conformance import harness

QUICK = harness.QUICK_FEATURES
CASES = harness.all_cases()


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
