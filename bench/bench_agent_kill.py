"""Benchmark: kill -9 of the agent during a 1,000-policy apply, many times.

The longer run of ``tests/e2e/test_agent_kill.py`` (same node, pods and
policies: ``tests.e2e.agent_kills``), per backend: one clean run gives the
reference kernel state; then ``--kills`` times: the kernel wiped to what the
plugin leaves (records, no kernel state), the agent started and killed -9
a seeded random moment of its first sync, what the kill left classified
(nothing of the policies / part of them / all of them), the agent started
again and timed from the kill to its first good sync, and its state checked
against the clean one (no duplicate, no orphan chain or set).

Prints per backend: the clean first sync, how many kills left a partial
state, the convergence time after a kill (median and worst), and every
failure.  Needs root.  ``--backends`` and ``--kills`` choose the work.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from firewall_lab.apiserver import ApiServer
from tests.e2e import agent_kills
from tests.e2e.agent_env import AgentNode, Kube
from tests.kernel import faults


def classify(found: dict[str, list[str]], clean: dict[str, list[str]]) -> str:
    """What a kill left: ``none`` (not one policy rule or set), ``all``, or ``partial``."""
    if found == clean:
        return "all"
    policy_keys = {key for key in clean if "PODWALL-S-" in key or "PODWALL-IN" in key}
    present = policy_keys & {key for key, value in found.items() if value == clean.get(key)}
    return "none" if not present else "partial"


def run_backend(kube: Kube, backend: str, kills: int, seed: int) -> list[str]:
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix=f"pwbench-kill-{backend}-") as root:
        node = AgentNode(kube, Path(root), backend=backend).start()
        try:
            for namespace in agent_kills.NAMESPACES:
                node.add_pod(namespace, f"pod-{namespace}")
            seconds = agent_kills.clean_run(node)
            clean = faults.canonical(node.netns, backend)
            rng = random.Random(seed)
            left: dict[str, int] = {"none": 0, "partial": 0, "all": 0}
            times = []
            for number in range(kills):
                faults.wipe_netfilter(node.netns)
                agent_kills.kill_during_apply(node, rng, seconds * 1.2)
                left[classify(faults.canonical(node.netns, backend), clean)] += 1
                times.append(agent_kills.converge(node))
                found = faults.canonical(node.netns, backend)
                orphans = faults.orphans(node.netns, backend)
                if found != clean or orphans:
                    failures.append(f"{backend} kill {number}: differs {orphans[:5]}")
                node.stop_agent()
            print(
                f"{backend:16} first sync {seconds:5.2f}s  kills {kills}: left nothing "
                f"{left['none']}, part {left['partial']}, all {left['all']}  converged "
                f"median {statistics.median(times):5.2f}s worst {max(times):5.2f}s",
                flush=True,
            )
        finally:
            node.stop()
    return failures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_agent_kill")
    parser.add_argument("--backends", nargs="*", default=list(faults.BACKENDS))
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args(argv)
    server = ApiServer(bookmark_interval=0.5)
    kube = Kube(server.start())
    failures: list[str] = []
    try:
        kube.install_crds()
        agent_kills.thousand_policies(kube)
        for backend in args.backends:
            failures += run_backend(kube, backend, args.kills, args.seed)
    finally:
        server.stop()
    for failure in failures:
        print(f"FAILED {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
