"""Conformance dual-stack (bridge, ``--ipv6``): every check probed over IPv4
and IPv6; cases with ipBlocks run once per family.  A quick subset by
default, every case with ``-m conformance_full``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conformance import harness

QUICK = {
    "default-deny-all",
    "podselector-or-namespaceselector",
    "named-port",
    "egress-cidr",
    "cidr-and-except-overlap",
    "udp-default-deny-ingress",
    "sctp-ports",
    "admin-egress-deny-port",
}
CASES = harness.load_cases("netpol.yaml") + harness.load_cases("fwrule.yaml")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.ConformanceLab]:
    yield from harness.running_lab(tmp_path_factory, "dual", cni="bridge", ipv6=True)


@pytest.mark.parametrize("case", harness.marked(CASES, QUICK))
def test_case(lab: harness.ConformanceLab, case: dict[str, Any]) -> None:
    lab.reset()
    failures = lab.run_dual_stack(case)
    assert not failures, f"{case['it']}\n" + "\n".join(failures)
