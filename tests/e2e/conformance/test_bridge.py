"""Conformance with the bridge primary (IPv4): every upstream NetworkPolicy case
and every FirewallRule scenario, in one 2-node lab with the real node agents."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import kernel_ready
from tests.e2e.conformance import harness

CASES = harness.load_cases("netpol.yaml") + harness.load_cases("fwrule.yaml")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.ConformanceLab]:
    if kernel_ready() is not None:
        pytest.skip(kernel_ready() or "")
    the = harness.ConformanceLab(
        str(tmp_path_factory.mktemp("lab") / "bridge"), cni="bridge", ipv6=False
    )
    try:
        yield the.up()
    finally:
        from firewall_lab.lab import teardown

        teardown.down(the.directory)


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_case(lab: harness.ConformanceLab, case: dict[str, Any]) -> None:
    lab.reset()
    failures = lab.run_case(case)
    assert not failures, f"{case['it']}\n" + "\n".join(failures)
