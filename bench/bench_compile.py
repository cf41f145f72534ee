"""Benchmark: compile and apply a node at 10,000 cluster pods (issue 3).

Workload (``bench.workload``): 100 local pods, 10,000 cluster pods, 500
NetworkPolicies, 50 FirewallRules.  Prints, with baselines measured in the
same run (medians of ``--reps``):

* compile time: parsing the documents (once), ``Snapshot.build`` from the
  parsed objects (what the agent does at every sync) and ``compile_node``;
* one remote pod label change and one policy change (cumulative): snapshot
  build and an incremental ``compiler.Compiler.compile`` vs a from-scratch
  ``compile_node`` (the two results are asserted equal);
* full apply by the applier vs a bare ``iptables-restore`` (both families) +
  ``ipset restore`` of the same output into an empty node (target <= 1.5);
* the changes as a ratio to a full sync (snapshot build + compile + full
  apply; target <= 0.1): the applier's write only, and snapshot build +
  incremental compile + write;
* rules per local pod at 1,000 and 10,000 cluster pods (must be equal).

The writes here are the iptables ``Applier``'s (``--backend``); the nftables
writer against it, and the packet path under the loaded ruleset, are
``bench_dataplane``'s.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from bench import workload
from firewall_lab import netns
from firewall_operator import applier, cluster, compiler, netpol
from firewall_plugin import endpoints, model, render
from firewall_plugin.backends import get_backend

T = TypeVar("T")
Docs = list[dict[str, Any]]


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def rebuild(
    parsed: cluster.Snapshot,
    *,
    pods: Sequence[cluster.Pod] | None = None,
    policies: Sequence[netpol.NetworkPolicy] | None = None,
) -> cluster.Snapshot:
    """A snapshot from parsed objects, as the agent builds one from its cache
    at every sync (``Snapshot.build``), with some objects replaced."""
    return cluster.Snapshot.build(
        namespaces=parsed.namespaces.values(),
        pods=parsed.pods if pods is None else pods,
        policies=parsed.policies if policies is None else policies,
        firewall_rules=parsed.firewall_rules,
        problems=parsed.problems,
    )


def label_change(snapshot: cluster.Snapshot) -> cluster.Snapshot:
    """pod-150 (remote, ns-50, env=prod) moves from tier web to db: it leaves
    every "prod namespaces, tier web or api" peer set."""
    pods = [
        dataclasses.replace(pod, labels={**pod.labels, "tier": "db"})
        if pod.name == "pod-150"
        else pod
        for pod in snapshot.pods
    ]
    return rebuild(snapshot, pods=pods)


def policy_change(snapshot: cluster.Snapshot) -> cluster.Snapshot:
    """np-0 admits another port (its document parsed again, as the agent does)."""
    doc = workload.policy_document(0)
    doc["spec"]["ingress"][0]["ports"] = [{"port": 8443}]
    changed = netpol.parse(doc)
    policies = [changed if p.key == changed.key else p for p in snapshot.policies]
    return rebuild(snapshot, policies=policies)


CHANGES: tuple[tuple[str, Callable[[cluster.Snapshot], cluster.Snapshot]], ...] = (
    ("label change", label_change),
    ("policy change", policy_change),
)


def compile_round(parsed: cluster.Snapshot, records: list[endpoints.EndpointRecord]) -> Any:
    """One full compile, then each change (cumulative) three ways: snapshot
    build, incremental ``Compiler.compile`` and a from-scratch ``compile_node``
    (which must agree)."""
    build_s, snapshot = timed(lambda: rebuild(parsed))
    full_s, compiled = timed(lambda: compiler.compile_node(snapshot, records))
    incremental = compiler.Compiler()
    first_s, first = timed(lambda: incremental.compile(snapshot, records))
    assert first == compiled, "incremental compiler differs from compile_node"
    # the agent applies what its Compiler returns: unchanged chains and sets
    # stay the same objects from one sync to the next
    out: dict[str, Any] = {"build": build_s, "compile": full_s, "first": first_s,
                           "compiled": first, "snap": snapshot, "changes": []}  # fmt: skip
    current = snapshot
    for _label, change in CHANGES:
        change_s, current = timed(lambda c=current, f=change: f(c))  # type: ignore[misc]
        inc_s, got = timed(lambda c=current: incremental.compile(c, records))  # type: ignore[misc]
        scratch_s, want = timed(lambda c=current: compiler.compile_node(c, records))  # type: ignore[misc]
        assert got == want, "incremental compiler differs from compile_node"
        out["changes"].append({"build": change_s, "compile": inc_s, "scratch": scratch_s,
                               "compiled": got})  # fmt: skip
    return out


def bare_texts(
    state: dict[model.Family, model.FamilyState],
) -> tuple[dict[model.Family, str], str]:
    """The same output as plain restore inputs: per family, and for ipset."""
    tables = {
        family: render.render_restore(family=family, replace=list(fs.chains.values()))
        for family, fs in state.items()
    }
    lines = []
    for fs in state.values():
        for ipset in fs.sets.values():
            family = render.ipset_family(ipset.family)
            lines.append(f"create {ipset.name} {ipset.kind} family {family} maxelem 1048576")
            lines += [f"add {ipset.name} {entry}" for entry in ipset.entries]
    return tables, "\n".join(lines) + "\n"


def restore_binary(backend: str, family: model.Family) -> str:
    variant = "legacy" if backend in ("iptables-legacy", "iptc") else "nft"
    return f"{'ip6tables' if family == 'ipv6' else 'iptables'}-{variant}-restore"


def bare_restore(backend: str, tables: dict[model.Family, str], sets: str) -> float:
    """Runs in the node netns: ipset restore, then one restore per family."""
    start = time.perf_counter()
    subprocess.run(["ipset", "restore"], input=sets, text=True, check=True)
    for family, text in tables.items():
        argv = [restore_binary(backend, family), "--noflush", "-w"]
        subprocess.run(argv, input=text, text=True, check=True)
    return time.perf_counter() - start


def applier_run(
    backend: str, workdir: str, states: Sequence[dict[model.Family, model.FamilyState]]
) -> list[dict[str, float]]:
    """Runs in the node netns: full apply of states[0], then each change."""
    the = applier.Applier(
        get_backend(backend), run_dir=os.path.join(workdir, "run"),
        state_dir=os.path.join(workdir, "state"),
    )  # fmt: skip
    out = []
    for state in states:
        stats = the.apply(state)
        out.append({"seconds": stats.total_seconds, "chains": stats.chains_written,
                    "rules": stats.rules_written, "sets": stats.sets_written,
                    "entries": stats.set_entries_written, "read": stats.read_seconds,
                    "set_s": stats.sets_seconds, "chain_s": stats.chains_seconds})  # fmt: skip
    the.cleanup()
    return out


def in_fresh_node(fn: Callable[..., T], *args: Any) -> T:
    node = netns.create(netns.unique_name("pwbench"))
    try:
        return netns.call(node, fn, *args, timeout=600)
    finally:
        netns.delete(node)


def median_of(rounds: list[Any], pick: Callable[[Any], float]) -> float:
    return statistics.median(pick(r) for r in rounds)


def report_compile(args: argparse.Namespace, parse_s: float, rounds: list[Any]) -> None:
    compiled = rounds[0]["compiled"]
    print(f"compile: {args.pods} cluster pods, {args.local} local, {args.policies} policies, "
          f"{args.rules} FirewallRules (medians of {len(rounds)}): parse documents "
          f"{parse_s:.2f} s (once; the agent parses per event), snapshot build "
          f"{median_of(rounds, lambda r: r['build']) * 1000:.0f} ms, compile_node "
          f"{median_of(rounds, lambda r: r['compile']):.2f} s, first Compiler.compile "
          f"{median_of(rounds, lambda r: r['first']):.2f} s; {compiled.rule_count} rules, "
          f"problems {len(compiled.problems)}")  # fmt: skip
    for index, (label, _) in enumerate(CHANGES):
        build, inc, scratch = (
            statistics.median(r["changes"][index][key] for r in rounds)
            for key in ("build", "compile", "scratch")
        )
        print(f"{label}: snapshot build {build * 1000:.0f} ms, incremental compile "
              f"{inc * 1000:.0f} ms = {inc / scratch:.3f} of a from-scratch compile_node "
              f"({scratch * 1000:.0f} ms)")  # fmt: skip


def report_apply(args: argparse.Namespace, rounds: list[Any]) -> None:
    state = rounds[0]["compiled"].families
    tables, sets = bare_texts(state)
    bare, runs = [], []
    states = [state] + [c["compiled"].families for c in rounds[0]["changes"]]
    with tempfile.TemporaryDirectory(prefix="pwbench-") as workdir:
        for record in workload.records(args.local):
            endpoints.write(os.path.join(workdir, "state"), record)
        for _ in range(args.reps):
            bare.append(in_fresh_node(bare_restore, args.backend, tables, sets))
            runs.append(in_fresh_node(applier_run, args.backend, workdir, states))
    full_s = statistics.median(run[0]["seconds"] for run in runs)
    bare_s = statistics.median(bare)
    print(f"full apply ({args.backend}): applier {full_s * 1000:.0f} ms, bare restore "
          f"{bare_s * 1000:.0f} ms, ratio {full_s / bare_s:.2f} (target <= 1.5); "
          f"wrote {runs[0][0]['chains']} chains, {runs[0][0]['rules']} rules, "
          f"{runs[0][0]['sets']} sets, {runs[0][0]['entries']} entries; read "
          f"{runs[0][0]['read'] * 1000:.0f} ms, sets {runs[0][0]['set_s'] * 1000:.0f} ms, chains "
          f"{runs[0][0]['chain_s'] * 1000:.0f} ms")  # fmt: skip
    sync_s = median_of(rounds, lambda r: r["build"] + r["compile"]) + full_s
    print(f"full sync (snapshot build + compile_node + full apply): {sync_s * 1000:.0f} ms")
    for index, (label, _) in enumerate(CHANGES, start=1):
        write = statistics.median(run[index]["seconds"] for run in runs)
        change = [r["changes"][index - 1] for r in rounds]
        whole = write + statistics.median(c["build"] + c["compile"] for c in change)
        scratch = write + statistics.median(c["build"] + c["scratch"] for c in change)
        print(f"{label}: write only {write * 1000:.1f} ms = {write / sync_s:.3f} of a full sync "
              f"({write / full_s:.3f} of the full apply); compile + write {whole * 1000:.1f} ms "
              f"= {whole / sync_s:.3f} of a full sync (target <= 0.1; with a from-scratch "
              f"compile_node {scratch / sync_s:.3f}); wrote {runs[0][index]['chains']} chains, "
              f"{runs[0][index]['sets']} sets ({runs[0][index]['entries']} entries); time in "
              f"sets {runs[0][index]['set_s'] * 1000:.0f} ms, chains "
              f"{runs[0][index]['chain_s'] * 1000:.0f} ms")  # fmt: skip


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.bench_compile")
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--local", type=int, default=100)
    parser.add_argument("--policies", type=int, default=500)
    parser.add_argument("--rules", type=int, default=50)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--backend", default="iptables-nft", help="iptables-nft | iptables-legacy | iptc"
    )
    parser.add_argument(
        "--compile-only", action="store_true", help="no kernel work: compile figures only"
    )
    return parser.parse_args(list(argv))


def main(argv: Sequence[str]) -> int:
    args = parse(argv)
    size = {"policies": args.policies, "rules": args.rules, "local": args.local}
    records = workload.records(args.local)
    docs = workload.cluster_documents(pods=args.pods, **size)
    parse_s, parsed = timed(lambda: cluster.Snapshot.from_documents(docs))
    rounds = [compile_round(parsed, records) for _ in range(args.reps)]
    report_compile(args, parse_s, rounds)
    compiled = rounds[0]["compiled"]
    small_snapshot = cluster.Snapshot.from_documents(workload.cluster_documents(pods=1_000, **size))
    small = compiler.compile_node(small_snapshot, records)
    per_small, per_big = small.rule_count / args.local, compiled.rule_count / args.local
    print(f"rules per local pod: {per_small:.1f} at 1,000 cluster pods, {per_big:.1f} at "
          f"{args.pods}: {'equal' if per_small == per_big else 'DIFFERENT'}")  # fmt: skip
    if not args.compile_only:
        report_apply(args, rounds)
    return 0 if per_small == per_big else 1


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
