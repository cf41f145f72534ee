"""Conformance with the bridge primary (IPv4): every upstream NetworkPolicy case
and every FirewallRule scenario, in one 2-node lab with the real node agents."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conformance import harness

CASES = harness.load_cases("netpol.yaml") + harness.load_cases("fwrule.yaml")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.ConformanceLab]:
    yield from harness.running_lab(tmp_path_factory, "bridge", cni="bridge", ipv6=False)


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_case(lab: harness.ConformanceLab, case: dict[str, Any]) -> None:
    lab.reset()
    failures = lab.run_case(case)
    assert not failures, f"{case['it']}\n" + "\n".join(failures)
