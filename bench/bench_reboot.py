"""Benchmark: ADD and DEL on a node whose netfilter a reboot wiped.

Per backend, in a throwaway node namespace: ``--pods`` pods through the real
CNI chain (bridge + host-local + podwall), programmed by the agent's writer
with a NetworkPolicy, so the node carries their chains and sets.  Then:

* healthy: ADD of a new pod and DEL of it, ``--runs`` times (the baseline);
* rebooted: netfilter wiped (``tests.kernel.faults.reboot``: every table,
  ipset and conntrack entry gone, the state folder kept), then the first
  ADD (it rebuilds the skeleton and gives all ``--pods`` records their
  fail-closed state) and the first DEL after it;
* the agent's next sync (the restarted agent's first apply) after the reboot.

Prints medians and the ratio rebooted/healthy.  The first ADD after a
reboot does the repair of every record in the same transaction, so it grows
with the pods; nothing after it does.  Needs root.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence

from firewall_lab import netns
from tests.kernel import cni_helpers, faults

V4 = "10.88.0.0/16"


def timed(work: Callable[[], object]) -> float:
    start = time.monotonic()
    work()
    return time.monotonic() - start


def run_backend(backend: str, pods: int, runs: int) -> None:
    node_ns = netns.create(netns.unique_name("pwboot"), sysctls={"net.ipv4.ip_forward": "1"})
    made: list[str] = []

    def pod_ns() -> str:
        made.append(netns.create(netns.unique_name("pwbootp")))
        return made[-1]

    try:
        with tempfile.TemporaryDirectory(prefix="pwbench-reboot-") as root:
            node = cni_helpers.Node(node_ns, root)
            network = cni_helpers.conflist([node.bridge([V4]), node.podwall(backend=backend)])
            present = node.add_many(network, [pod_ns() for _ in range(pods)])
            named = {f"p{i}": pod for i, pod in enumerate(present)}
            docs = [*faults.pod_docs(named, {}), faults.allow_from("p0", "p1")]
            faults.Agent(node, backend).sync(docs)
            healthy_add, healthy_del = [], []
            for _ in range(runs):
                one = cni_helpers.attachment_for(pod_ns())
                healthy_add.append(timed(functools.partial(node.runner.add, network, one)))
                healthy_del.append(timed(functools.partial(node.runner.delete, network, one)))
            faults.reboot(node)
            attachment = cni_helpers.attachment_for(pod_ns())
            first_add = timed(lambda: node.runner.add(network, attachment))
            first_del = timed(lambda: node.runner.delete(network, attachment))
            sync = timed(lambda: faults.Agent(node, backend).sync(docs))
            add, remove = statistics.median(healthy_add), statistics.median(healthy_del)
            print(
                f"{backend:16} {pods} pods: healthy ADD {add:.3f}s DEL {remove:.3f}s; "
                f"after the reboot ADD {first_add:.3f}s ({first_add / add:.1f}x) "
                f"DEL {first_del:.3f}s ({first_del / remove:.1f}x); agent's sync {sync:.3f}s",
                flush=True,
            )
    finally:
        for name in made:
            netns.delete(name)
        netns.delete(node_ns)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_reboot")
    parser.add_argument("--backends", nargs="*", default=list(faults.BACKENDS))
    parser.add_argument("--pods", type=int, default=50)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    for backend in args.backends:
        run_backend(backend, args.pods, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
