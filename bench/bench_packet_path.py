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
interleaved rounds (the machine is shared: drift hits both alike), with no
podwall and with podwall's whole node written:

* the connect+echo+close latency (``packet_path``): median and best ratio
  (target <= 1.05), and the median of the per-round ratios;
* the CPU time (client and server processes, user + system: the kernel
  forwards a veth packet in the sender's context) per echo round trip on one
  open TCP connection (``--round-trips``): the established path, and a
  figure that other load on the machine disturbs far less than latency.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
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


CPU_SERVER = f"""
import resource, socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", {packet_path.PORT})); s.listen(8)
def serve(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while d := c.recv(64): c.sendall(d)
def accept():
    while True: threading.Thread(target=serve, args=(s.accept()[0],), daemon=True).start()
threading.Thread(target=accept, daemon=True).start()
print("ready", flush=True)
for _ in sys.stdin:
    r = resource.getrusage(resource.RUSAGE_SELF); print(r.ru_utime + r.ru_stime, flush=True)
"""
CPU_CLIENT = f"""
import resource, socket, sys
n = int(sys.argv[2]); c = socket.create_connection((sys.argv[1], {packet_path.PORT}), timeout=2)
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
for _ in range(200): c.send(b"x"); c.recv(64)
r0 = resource.getrusage(resource.RUSAGE_SELF)
for _ in range(n): c.send(b"x"); c.recv(64)
r1 = resource.getrusage(resource.RUSAGE_SELF)
print(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime)
"""


def cpu_per_round_trip(path: packet_path.Path, round_trips: int) -> float:
    """CPU seconds (client + server) per echo round trip on one connection."""
    argv = ["ip", "netns", "exec", path.server, "taskset", "-c", "1", sys.executable, "-c"]
    server = subprocess.Popen(
        [*argv, CPU_SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert server.stdin is not None and server.stdout is not None
    try:
        server.stdout.readline()

        def server_cpu() -> float:
            assert server.stdin is not None and server.stdout is not None
            server.stdin.write("\n")
            server.stdin.flush()
            return float(server.stdout.readline())

        before = server_cpu()
        client = ["taskset", "-c", "0", sys.executable, "-c", CPU_CLIENT, path.server_ip]
        done = netns.run(path.client, [*client, str(round_trips)], timeout=600)
        return (float(done.stdout) + server_cpu() - before) / round_trips
    finally:
        server.kill()
        server.wait()
        for stream in (server.stdin, server.stdout):
            if stream is not None:
                stream.close()


def _writer(backend: str, workdir: str) -> applier.NodeApplier:
    if backend == backends.NFTABLES:
        return NftApplier(run_dir=workdir, state_dir=None)
    return applier.Applier(backends.get_backend(backend), run_dir=workdir)


def _program(backend: str, workdir: str, node: compiler.CompiledNode) -> None:
    _writer(backend, workdir).apply(node.families, endpoints=node.endpoints)


def _unprogram(backend: str, workdir: str) -> None:
    _writer(backend, workdir).cleanup()


#: per backend and metric ("latency", "cpu"): (without podwall, with podwall), one per round
Samples = dict[str, dict[str, tuple[list[float], list[float]]]]


def _sample(path: packet_path.Path, args: argparse.Namespace) -> dict[str, float]:
    return {
        "latency": path.measure(args.connections),
        "cpu": cpu_per_round_trip(path, args.round_trips),
    }


def measure(
    path: packet_path.Path, chosen: list[str], node: compiler.CompiledNode, args: argparse.Namespace
) -> Samples:
    """Every metric with and without podwall, one pair per round; each round
    measures every backend, each against its own baseline taken just before."""
    found: Samples = {b: {m: ([], []) for m in ("latency", "cpu")} for b in chosen}
    with tempfile.TemporaryDirectory(prefix="pwbench-") as workdir:
        for _ in range(args.rounds):
            for backend in chosen:
                for metric, value in _sample(path, args).items():
                    found[backend][metric][0].append(value)
                netns.call(path.node, _program, backend, workdir, node)
                for metric, value in _sample(path, args).items():
                    found[backend][metric][1].append(value)
                netns.call(path.node, _unprogram, backend, workdir)
    return found


def report(backend: str, samples: dict[str, tuple[list[float], list[float]]]) -> None:
    """Medians and bests of each side, and the median of the per-round ratios
    (each round's pair was measured back to back: the least drift)."""
    for metric, what in (("latency", "connect+echo+close"), ("cpu", "CPU per round trip")):
        none, loaded = samples[metric]
        paired = statistics.median(b / a for a, b in zip(none, loaded, strict=True))
        line = ", ".join(
            f"{name} {pick(none) * 1e6:.1f} -> {pick(loaded) * 1e6:.1f} us "
            f"({pick(loaded) / pick(none):.3f})"
            for name, pick in (("median", statistics.median), ("best", min))
        )
        print(f"{backend} {what} ({len(none)} rounds): {line}; median of per-round ratios "
              f"{paired:.3f} (target <= {TARGET})")  # fmt: skip


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.bench_packet_path")
    parser.add_argument("--backends", default="nftables,iptables-nft")
    parser.add_argument("--pods", type=int, default=1_000)
    parser.add_argument("--local", type=int, default=100)
    parser.add_argument("--policies", type=int, default=500)
    parser.add_argument("--rules", type=int, default=50)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--round-trips", type=int, default=20_000)
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
        for backend, samples in measure(path, chosen, node, args).items():
            report(backend, samples)
    finally:
        path.delete()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
