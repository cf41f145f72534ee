"""Benchmark-style fuzz run of the CNI plugin: many more cases than the suite.

``tests/kernel/test_plugin_fuzz.py`` runs 150 cases per backend in the
suite; this runs ``--cases`` (default 2,000) per backend of ``--backends``
(default all four), each backend in a fresh node namespace, with the same
generator, harness and oracle (``tests.kernel.plugin_fuzz``): real plugin
processes, mutated stdin and environment, and after every failed run the
kernel and the state folder as they were.  Prints, per backend, the cases
run, how many succeeded, the error codes seen, the run time per case, and
every problem found (with what it takes to run the case again).  Exits 1
when any was found.  Needs root.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from firewall_lab import netns
from tests.kernel import plugin_cli as cli
from tests.kernel import plugin_fuzz

BACKENDS = ("nftables", "iptables-nft", "iptables-legacy", "iptc")


def code_of(report: plugin_fuzz.Report) -> str:
    if report.status == 0:
        return "ok"
    try:
        return str(json.loads(report.stdout).get("code"))
    except (ValueError, AttributeError):
        return "?"


def run_backend(backend: str, cases: int, seed: int) -> list[str]:
    node = netns.create(netns.unique_name("pwfuzz"), sysctls={"net.ipv4.ip_forward": "1"})
    found: list[str] = []
    codes: collections.Counter[str] = collections.Counter()
    try:
        cli.prime(node)
        with tempfile.TemporaryDirectory(prefix="pwbench-fuzz-") as folder:
            fuzzer = plugin_fuzz.Fuzzer(f"{seed}-{backend}", node, Path(folder), backend=backend)
            harness = plugin_fuzz.Harness(node, Path(folder))
            start = time.monotonic()
            try:
                for number in range(cases):
                    case = fuzzer.case()
                    report = harness.run(case)
                    codes[code_of(report)] += 1
                    found += [
                        f"{backend} case {number}: {problem}\n  {case}"
                        for problem in plugin_fuzz.problems(report)
                    ]
            finally:
                harness.close()
            took = time.monotonic() - start
    finally:
        netns.delete(node)
    summary = " ".join(f"{code}:{count}" for code, count in sorted(codes.items()))
    print(
        f"{backend:16} {cases} cases in {took:6.1f}s ({1000 * took / cases:5.1f} ms each); "
        f"outcomes {summary}; problems {len(found)}",
        flush=True,
    )
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_plugin_fuzz")
    parser.add_argument("--backends", nargs="*", default=list(BACKENDS))
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args(argv)
    found: list[str] = []
    for backend in args.backends:
        found += run_backend(backend, args.cases, args.seed)
    for problem in found:
        print(f"FAILED {problem}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
