"""Benchmark: the packet path with podwall's identity checks on, per backend.

Two pods on a bridge (``packet_path``: client pod-0 and server pod-1) are
endpoints of a node holding ``--local`` pods of the ``workload`` cluster
(``--pods`` pods, ``--policies`` NetworkPolicies, ``--rules`` FirewallRules).
Their endpoint records name their real bridge ports, so every packet between
them passes podwall's identity (anti-spoofing) checks, dispatch and policy
chains, with the other local pods' dispatch present too.

The baseline node tracks connections (an nftables rule using conntrack, as
kube-proxy's and every CNI's masquerade rules do on a real node), so the
ratio is podwall's own cost, not conntrack's.  ``--position last`` (the
default) gives the two pods container IDs that sort last: on the iptables
backends, whose dispatch is a list of rules, their packets pass every other
pod's rules first (the worst case); ``first`` the best case.

For each backend of ``--backends`` (default ``nftables,iptables-nft``), in
interleaved rounds (the machine is shared: drift hits both alike), the
connect+echo+close latency with no podwall and with podwall's whole node
written; prints the median and best ratio (target <= 1.05).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections.abc import Sequence

from bench import packet_path, workload
from firewall_lab import netns
from firewall_operator import applier, cluster, compiler, evaluate
from firewall_operator.nft_applier import NftApplier
from firewall_plugin import backends, endpoints

TARGET = 1.05


BASELINE = """
table inet pwbench {
    chain forward {
        type filter hook forward priority 10; policy accept;
        ct state established,related counter
    }
}
"""


def records(path: packet_path.Path, local: int, *, position: str) -> list[endpoints.EndpointRecord]:
    """The workload's local records; pod-0 and pod-1 are the path's pods,
    with container IDs that sort last (or first, see the module doc)."""
    found = workload.records(local)
    for index, tag in ((0, "c"), (1, "s")):
        v4 = workload.pod_ips(index)[0]
        found[index] = found[index].replace(
            containerID=f"{'zz' if position == 'last' else '00'}-path-{tag}",
            hostInterface=path.interfaces[tag],
            bridge="br0",
            ips=(f"{v4}/9",),
        )
    return found


def compiled_node(path: packet_path.Path, args: argparse.Namespace) -> compiler.CompiledNode:
    docs = workload.cluster_documents(
        pods=args.pods, policies=args.policies, rules=args.rules, local=args.local
    )
    snapshot = cluster.Snapshot.from_documents(docs)
    pods = {p.name: p for p in snapshot.pods if p.name in ("pod-0", "pod-1")}
    verdict = evaluate.Evaluator(snapshot).verdict(
        pods["pod-0"], pods["pod-1"], workload.BENCH_PORT, "TCP"
    )
    assert verdict.allowed, f"benchmark pair not allowed: {verdict}"
    return compiler.compile_node(snapshot, records(path, args.local, position=args.position))


def _writer(backend: str, workdir: str) -> applier.NodeApplier:
    if backend == backends.NFTABLES:
        return NftApplier(run_dir=workdir, state_dir=None)
    return applier.Applier(backends.get_backend(backend), run_dir=workdir)


def _program(backend: str, workdir: str, node: compiler.CompiledNode) -> None:
    _writer(backend, workdir).apply(node.families, endpoints=node.endpoints)


def _unprogram(backend: str, workdir: str) -> None:
    _writer(backend, workdir).cleanup()


def measure(
    path: packet_path.Path, chosen: list[str], node: compiler.CompiledNode, args: argparse.Namespace
) -> dict[str, tuple[list[float], list[float]]]:
    """Per backend (without podwall, with podwall) seconds per connection, one
    pair per round; each round measures every backend, each against its own
    baseline taken just before."""
    found: dict[str, tuple[list[float], list[float]]] = {b: ([], []) for b in chosen}
    with tempfile.TemporaryDirectory(prefix="pwbench-") as workdir:
        for _ in range(args.rounds):
            for backend in chosen:
                none, loaded = found[backend]
                none.append(path.measure(args.connections))
                netns.call(path.node, _program, backend, workdir, node)
                loaded.append(path.measure(args.connections))
                netns.call(path.node, _unprogram, backend, workdir)
    return found


def report(backend: str, none: list[float], loaded: list[float], rounds: int) -> None:
    """Medians and bests of each side, and the median of the per-round ratios
    (each round's pair was measured back to back: the least drift)."""
    for name, pick in (("median", statistics.median), ("best", min)):
        base, with_rules = pick(none), pick(loaded)
        print(f"packet path {backend} ({name} of {rounds} rounds): connect+echo+close "
              f"{base * 1e6:.0f} us without podwall, {with_rules * 1e6:.0f} us with it (identity "
              f"checks on), ratio {with_rules / base:.3f} (target <= {TARGET})")  # fmt: skip
    paired = statistics.median(b / a for a, b in zip(none, loaded, strict=True))
    print(f"packet path {backend}: median of the per-round ratios {paired:.3f}")


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.bench_packet_path")
    parser.add_argument("--backends", default="nftables,iptables-nft")
    parser.add_argument("--pods", type=int, default=1_000)
    parser.add_argument("--local", type=int, default=100)
    parser.add_argument("--policies", type=int, default=500)
    parser.add_argument("--rules", type=int, default=50)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--position", choices=("first", "last"), default="last")
    return parser.parse_args(list(argv))


def main(argv: Sequence[str]) -> int:
    args = parse(argv)
    chosen = [name.strip() for name in args.backends.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in backends.CONCRETE_NAMES]
    if unknown:
        print(f"unknown backend(s): {', '.join(unknown)}")
        return 2
    path = packet_path.Path.create(workload.pod_ips(0)[0], workload.pod_ips(1)[0])
    try:
        netns.run(path.node, ["nft", "-f", "-"], input=BASELINE)
        node = compiled_node(path, args)
        rules = sum(len(c.rules) for s in node.families.values() for c in s.chains.values())
        print(f"node: {len(node.endpoints)} endpoints, {rules} policy rules "
              f"({args.pods} cluster pods, {args.policies} policies), measured pods "
              f"{args.position}, {args.connections} connections a sample")  # fmt: skip
        for backend, (none, loaded) in measure(path, chosen, node, args).items():
            report(backend, none, loaded, args.rounds)
    finally:
        path.delete()
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
