"""A bounded, seeded fuzz of the CNI plugin (``plugin_fuzz``): real plugin
processes in a node namespace, mutated stdin and environment of every
verb.  No traceback, only the codes podwall documents, no foreign
exception, and a failed run leaves the kernel and the state folder as they
were.  ``bench/bench_plugin_fuzz.py`` runs many more cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.kernel import plugin_cli as cli
from tests.kernel import plugin_fuzz

CASES = 150


@pytest.mark.parametrize("backend", ["nftables", "iptables-nft"])
def test_fuzzed_invocations_fail_cleanly(node_ns: str, tmp_path: Path, backend: str) -> None:
    node = cli.prime(node_ns)
    fuzzer = plugin_fuzz.Fuzzer(f"fuzz-{backend}", node, tmp_path, backend=backend)
    harness = plugin_fuzz.Harness(node, tmp_path)
    found: list[str] = []
    outcomes = {"ok": 0, "failed": 0}
    try:
        for number in range(CASES):
            case = fuzzer.case()
            report = harness.run(case)
            outcomes["ok" if report.status == 0 else "failed"] += 1
            found += [f"case {number}: {p}\n  {case}" for p in plugin_fuzz.problems(report)]
    finally:
        harness.close()
    assert not found, "\n".join(found)
    assert outcomes["ok"] >= CASES // 10, f"too few runs got through: {outcomes}"
