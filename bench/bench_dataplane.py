"""Benchmark: the nftables data plane against iptables-nft on the bench workload.

Workload (``bench.workload``): 100 local pods, 10,000 cluster pods, 500
NetworkPolicies, 50 FirewallRules, compiled once per node (``compile_node``,
the agent's compiler).  Every figure is a ratio to a baseline measured in the
same run, the two sides interleaved (medians of ``--reps``):

* full sync (snapshot build + compile + a full write into an empty node, by
  the agent's writer: ``NftApplier`` and the iptables ``Applier``, the local
  pods' dispatch included): nftables / iptables-nft (target <= 0.5); the
  writes alone as well;
* a one-pod label change (a remote pod leaves the peer sets it was in):
  the agent's cache taking the pod's watch event and handing out its next
  snapshot plus the incremental compile (median of ``--reps`` changes, each
  after the change back), and the write, as a share of a full sync
  of the same backend (target <= 0.01 for nftables); both states written
  come from one ``Compiler`` fed by one ``ClusterCache``, as in the agent
  (unchanged chains and sets are the same objects in both);
* rules per local pod in the kernel (nftables: the rules of ``table inet
  podwall``; iptables-nft: podwall's rules of both families) at 1,000 and
  10,000 cluster pods: must not depend on the cluster's size.

The packet path under the same workload is ``bench_packet_path``'s.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from bench import bench_compile, workload
from firewall_lab import netns
from firewall_operator import cluster, compiler
from firewall_operator.agent import cache
from firewall_operator.agent import node as agent_node
from firewall_operator.nft_applier import NftApplier
from firewall_plugin import endpoints

T = TypeVar("T")
BACKENDS = ("nftables", "iptables-nft")


PLURALS = {"Namespace": "namespaces", "Pod": "pods", "NetworkPolicy": "networkpolicies",
           "FirewallRule": "firewallrules"}  # fmt: skip


def agent_cache(docs: list[dict[str, Any]]) -> cache.ClusterCache:
    """The agent's cache holding the workload (as after its first list)."""
    held = cache.ClusterCache(node=workload.NODE)
    for doc in docs:
        held.observe(PLURALS[doc["kind"]], "ADDED", doc)  # type: ignore[arg-type]
    return held


def label_change_event(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """pod-150 (remote, ns-50, env=prod) moves from tier web to db (as
    ``bench_compile.label_change``): the pod as its watch event brings it."""
    pod = next(doc for doc in docs if doc["kind"] == "Pod" and doc["metadata"]["name"] == "pod-150")
    labels = {**pod["metadata"]["labels"], "tier": "db"}
    return {**pod, "metadata": {**pod["metadata"], "labels": labels}}


def compiled_for(snapshot: cluster.Snapshot, records: list[endpoints.EndpointRecord]) -> Any:
    return compiler.compile_node(snapshot, records)


def write(backend: str, workdir: str, states: Sequence[Any]) -> list[float]:
    """Inside a node: a full write of ``states[0]``, then each later state
    incrementally; seconds of each write, then podwall's kernel rule count."""
    writer = agent_node.make_applier(
        backend, run_dir=f"{workdir}/run", state_dir=f"{workdir}/state"
    )
    seconds = []
    for state in states:
        start = time.perf_counter()
        writer.apply(state.families, endpoints=state.endpoints)
        seconds.append(time.perf_counter() - start)
    return [*seconds, float(kernel_rules(backend))]


def kernel_rules(backend: str) -> int:
    """podwall's rules in this namespace's kernel."""
    if backend == "nftables":
        text = subprocess.run(["nft", "-a", "list", "table", "inet", "podwall"],
                              capture_output=True, text=True, check=True).stdout  # fmt: skip
        heads = ("table", "chain", "set", "map")
        return sum(1 for line in text.splitlines()
                   if "# handle" in line and line.split()[0] not in heads)  # fmt: skip
    count = 0
    for tool in ("iptables-nft-save", "ip6tables-nft-save"):
        text = subprocess.run([tool], capture_output=True, text=True, check=True).stdout
        count += sum(1 for line in text.splitlines() if line.startswith("-A PODWALL"))
    return count


def listened_writes(workdir: str, state: Any) -> list[float]:
    """Inside a node where the agent's drift watch runs: seconds of a full
    nftables write while the watch listens to nf_tables notifications, then
    of one in its quiet window (``DriftWatch.quiet``), each into an empty node."""
    watch = agent_node.DriftWatch("nftables", lambda: None)
    watch.start()
    seconds = []
    try:
        for quiet in (False, True):
            writer = agent_node.make_applier(
                "nftables", run_dir=f"{workdir}/run", state_dir=f"{workdir}/state"
            )
            assert isinstance(writer, NftApplier)
            commits = functools.partial(getattr, writer, "commits")
            window = watch.quiet(commits) if quiet else contextlib.nullcontext()
            start = time.perf_counter()
            with window:
                writer.apply(state.families, endpoints=state.endpoints)
            seconds.append(time.perf_counter() - start)
            writer.cleanup()
    finally:
        watch.stop()
    return seconds


def in_fresh_node(fn: Callable[..., T], *args: Any) -> T:
    node = netns.create(netns.unique_name("pwbench"))
    try:
        return netns.call(node, fn, *args, timeout=900)
    finally:
        netns.delete(node)


def label_changes(
    held: cache.ClusterCache,
    incremental: compiler.Compiler,
    records: list[endpoints.EndpointRecord],
    first: Any,
    docs: list[dict[str, Any]],
    reps: int,
) -> tuple[float, Any, Any, list[float]]:
    """The label change ``reps`` times (each but the first after the change
    back): the median seconds of the cache update + incremental compile, and
    the states before and after the last one (what the writes write: the
    compiler hands the second over as the agent's next write gets it), and
    every sample (the first change after the full compile is the slowest)."""
    moved, back = (
        label_change_event(docs),
        next(doc for doc in docs if doc["kind"] == "Pod" and doc["metadata"]["name"] == "pod-150"),
    )
    seconds, before, after = [], first, first
    for rep in range(reps):
        if rep:
            held.observe("pods", "MODIFIED", back)
            before = incremental.compile(held.snapshot(), records)
            assert before.families == first.families
        start = time.perf_counter()
        held.observe("pods", "MODIFIED", moved)
        after = incremental.compile(held.snapshot(), records)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), before, after, seconds


def sync_figures(
    args: argparse.Namespace, docs: list[dict[str, Any]], parsed: cluster.Snapshot
) -> dict[str, Any]:
    """Compile times and, per backend, interleaved full and label-change writes."""
    records = workload.records(args.local)
    build, snapshot = bench_compile.timed(lambda: bench_compile.rebuild(parsed))
    full_compile, full = bench_compile.timed(lambda: compiled_for(snapshot, records))
    held = agent_cache(docs)
    incremental = compiler.Compiler()  # the agent's: one compiler for every sync,
    first = incremental.compile(held.snapshot(), records)  # so states share unchanged objects
    assert first.families == full.families
    change, first, relabelled, samples = label_changes(
        held, incremental, records, first, docs, args.reps
    )
    assert (
        relabelled.families == compiled_for(bench_compile.label_change(snapshot), records).families
    )
    runs: dict[str, list[list[float]]] = {backend: [] for backend in args.backends}
    listened: list[list[float]] = []
    with tempfile.TemporaryDirectory(prefix="pwbench-") as workdir:
        for record in records:
            endpoints.write(f"{workdir}/state", record)
        for _ in range(args.reps):
            for backend in args.backends:
                runs[backend].append(in_fresh_node(write, backend, workdir, [first, relabelled]))
            if "nftables" in args.backends:
                listened.append(in_fresh_node(listened_writes, workdir, first))
    return {"build": build, "compile": full_compile, "change": change, "samples": samples,
            "runs": runs, "rules": full.rule_count, "listened": listened}  # fmt: skip


def report_sync(args: argparse.Namespace, figures: dict[str, Any]) -> None:
    compile_s = figures["build"] + figures["compile"]
    print(f"compile of the workload (snapshot build + compile_node): {compile_s * 1000:.0f} ms, "
          f"{figures['rules']} rules; label change: cache update + incremental compile "
          f"{figures['change'] * 1000:.1f} ms (first {figures['samples'][0] * 1000:.1f}, "
          f"max {max(figures['samples']) * 1000:.1f})")  # fmt: skip
    syncs, writes = {}, {}
    for backend, runs in figures["runs"].items():
        full = statistics.median(run[0] for run in runs)
        change = statistics.median(run[1] for run in runs)
        writes[backend], syncs[backend] = full, compile_s + full
        label = figures["change"] + change
        print(f"  {backend:13} full write {full * 1000:6.0f} ms, full sync "
              f"{syncs[backend] * 1000:6.0f} ms; label change write {change * 1000:5.1f} ms, "
              f"with its compile {label * 1000:5.1f} ms = {label / syncs[backend]:.4f} of a "
              f"full sync{' (target <= 0.01)' if backend == 'nftables' else ''}")  # fmt: skip
    if figures["listened"]:
        heard, quiet = (statistics.median(run[i] for run in figures["listened"]) for i in (0, 1))
        print(f"  nftables full write with the agent's drift watch running: listening "
              f"{heard * 1000:.0f} ms, in its quiet window {quiet * 1000:.0f} ms (any other "
              f"nf_tables listener on the host makes the kernel notify all the same)")  # fmt: skip
    if set(BACKENDS) <= set(syncs):
        ratio = syncs["nftables"] / syncs["iptables-nft"]
        print(f"  nftables / iptables-nft: full sync {ratio:.2f} (target <= 0.5), full write alone "
              f"{writes['nftables'] / writes['iptables-nft']:.2f}")  # fmt: skip


def report_rules_per_pod(args: argparse.Namespace, size: dict[str, int]) -> None:
    records = workload.records(args.local)
    counts: dict[str, dict[int, float]] = {backend: {} for backend in args.backends}
    with tempfile.TemporaryDirectory(prefix="pwbench-") as workdir:
        for record in records:
            endpoints.write(f"{workdir}/state", record)
        for pods in (1_000, args.pods):
            docs = workload.cluster_documents(pods=pods, **size)
            state = compiled_for(cluster.Snapshot.from_documents(docs), records)
            for backend in args.backends:
                counts[backend][pods] = in_fresh_node(write, backend, workdir, [state])[-1]
    for backend, by_size in counts.items():
        small, big = by_size[1_000] / args.local, by_size[args.pods] / args.local
        print(f"kernel rules per local pod ({backend}): {small:.1f} at 1,000 cluster pods, "
              f"{big:.1f} at {args.pods}: {'equal' if small == big else 'DIFFERENT'}")  # fmt: skip


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.bench_dataplane", description=__doc__)
    parser.add_argument("--pods", type=int, default=10_000, help="cluster pods")
    parser.add_argument("--local", type=int, default=100)
    parser.add_argument("--policies", type=int, default=500)
    parser.add_argument("--rules", type=int, default=50)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--backend", action="append", choices=(*BACKENDS, "iptables-legacy"),
        help="repeatable (default nftables and iptables-nft)",
    )  # fmt: skip
    args = parser.parse_args(list(argv))
    args.backends = args.backend or list(BACKENDS)
    return args


def main(argv: Sequence[str]) -> int:
    args = parse(argv)
    if os.geteuid() != 0:
        print("bench_dataplane: skipped, needs root (network namespaces)")
        return 0
    size = {"policies": args.policies, "rules": args.rules, "local": args.local}
    docs = workload.cluster_documents(pods=args.pods, **size)
    parsed = cluster.Snapshot.from_documents(docs)
    print(f"data planes on {args.pods} cluster pods, {args.local} local, {args.policies} "
          f"NetworkPolicies, {args.rules} FirewallRules; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (shared machine)")  # fmt: skip
    report_sync(args, sync_figures(args, docs, parsed))
    report_rules_per_pod(args, size)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
