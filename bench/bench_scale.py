"""Benchmark: the API server's fan-out of pod changes to N agents, by design (docs/scale.md).

Designs: **today** (every agent lists and watches every pod), **relay**
(``podwall relay``: agents watch slim pods at one relay per 200 agents, at
least 2), **groups** (a central controller publishes address groups, one
object per distinct peer; each agent watches, by label, the groups its pods
need: Antrea's model on plain CRDs).

Measured on this machine (the API double and simulated agents,
``bench.scale_watchers``; pods of a realistic size, ~1.8 KB of JSON):

1. W watchers of ``/api/v1/pods`` on the double while pods churn (kubelet
   status updates, label changes, delete + re-create): watch events and bytes
   per watcher per pod change, and the double's CPU per change, W = 8, 32, 128
   (a least-squares line: a fixed part and a part per delivered event);
2. the same through a ``podwall relay`` process (the double has one watcher);
3. W watchers of an AddressGroup CRD, each with its node's label selector,
   while a controller rewrites the groups each pod change touches (the model
   below, W nodes): events and bytes per change, compared with the model;
4. an agent's CPU per event (decode + cache update, or a group's IP set) and
   its memory (slim cache and index of 30,000 pods, in a subprocess).

Then the table: by N (30 pods per node: 150,000 pods at 5,000 nodes; pod
changes at 100/s per 150,000 pods), per design, the watch events and bytes
the API server sends per pod change, its CPU per change on the double
(Python, one encoding per watcher; kube-apiserver encodes once per event, so
read the events and bytes, not the microseconds), each agent's CPU and
memory, and for each alternative the cut in events at 5,000 nodes and the
smallest N where it costs the API server less than today.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.agent_load import cpu_seconds, request
from bench.scale_groups import groups_fan_out
from bench.scale_load import ROOT, Churn, Fanout, fan_out, line, realistic_pod
from bench.scale_model import Cluster, GroupStats, group_stats
from firewall_lab.apiserver import spawn, write_kubeconfig

CHANGES_PER_S_PER_POD = 100 / 150_000
FANOUT = 200  # agents per relay


def relay_fan_out(
    url: str,
    kubeconfig: str,
    pods: list[dict[str, Any]],
    sizes: Sequence[int],
    changes: int,
    server: int,
) -> tuple[list[Fanout], float]:
    """Fan-out through a ``podwall relay`` process: its points, and the double's
    CPU per change with the relay as its only watcher."""
    port = 19000 + os.getpid() % 500
    relay = subprocess.Popen(
        [
            str(ROOT / ".venv" / "bin" / "podwall"),
            "relay",
            "--kubeconfig",
            kubeconfig,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        relay_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                request(relay_url, "GET", "/_stats")
                if request(relay_url, "GET", "/_stats")["pods"] >= len(pods) - changes:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the relay did not come up")
            time.sleep(0.3)
        points, double = [], 0.0
        for watchers in sizes:
            before = cpu_seconds(server)
            points.append(
                fan_out(relay_url, "/api/v1/pods", watchers, Churn(url, pods, changes), relay.pid)
            )
            double = (cpu_seconds(server) - before) / changes
        return points, double
    finally:
        relay.terminate()
        relay.wait(20)


def agent_cpu_per_event(pod: dict[str, Any], group_ips: int) -> dict[str, float]:
    """Seconds an agent spends per event: decode + cache update (today: full pods,
    relay: slim pods), or decode + the group's IP set (groups)."""
    from firewall_operator.agent.cache import ClusterCache
    from firewall_operator.relay.store import slim_pod

    found = {}
    for design, shape in (("today", lambda p: p), ("relay", slim_pod)):
        cache = ClusterCache(node="elsewhere")
        lines = []
        for n in range(2000):
            copy = json.loads(json.dumps(pod))
            copy["metadata"].update(resourceVersion=str(n + 1), name=f"p{n % 500}")
            copy["metadata"]["labels"]["rollout"] = str(n)
            lines.append(json.dumps({"type": "MODIFIED", "object": shape(copy)}).encode())
        start = time.process_time()
        for raw in lines:
            event = json.loads(raw)
            cache.observe("pods", event["type"], event["object"])
        found[design] = (time.process_time() - start) / len(lines)
    group = {
        "metadata": {"name": "g", "resourceVersion": "1"},
        "ips": [f"10.1.{i >> 8 & 255}.{i & 255}" for i in range(group_ips)],
    }
    raw = json.dumps({"type": "MODIFIED", "object": group}).encode()
    start = time.process_time()
    for _ in range(200):
        ips = frozenset(json.loads(raw)["object"]["ips"])
    found["groups"] = (time.process_time() - start) / 200
    return found | {"group_event_bytes": float(len(raw)), "group_set": float(len(ips))}


def agent_memory(pods: int) -> dict[str, float]:
    """An agent's base RSS (MiB, imports) and KiB per pod (slim cache + index)."""
    argv = [sys.executable, "-m", "bench.scale_memory", str(pods)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=ROOT).stdout
    found: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return found


@dataclass(frozen=True)
class Costs:
    """Measured per-unit costs (seconds, bytes) the table extrapolates with."""

    fixed: float  # the double's CPU per pod change, watchers aside
    per_event: float  # the double's CPU per delivered pod event
    full_bytes: float
    relay_fixed: float
    relay_per_event: float
    relevant: float  # pod changes that reach agents through the relay
    slim_bytes: float
    write: float  # the double's CPU per group write (no watcher)
    per_group_event: float  # the double's CPU per delivered group event
    agent: dict[str, float]
    memory: dict[str, float]


def row(design: str, nodes: int, c: Costs, stats: GroupStats | None) -> dict[str, float]:
    pods = nodes * 30
    rate = pods * CHANGES_PER_S_PER_POD
    cache_mib = c.memory["base"] + c.memory["per_pod"] * pods / 1024
    if design == "today":
        events, sent = float(nodes), nodes * c.full_bytes
        api, extra = c.fixed + c.per_event * nodes, 0.0
        agent, mib = rate * c.agent["today"], cache_mib
    elif design == "relay":
        relays = max(2, math.ceil(nodes / FANOUT))
        events, sent = float(relays), relays * c.full_bytes
        api = c.fixed + c.per_event * relays
        extra = relays * c.relay_fixed + c.relevant * nodes * c.relay_per_event
        agent, mib = rate * c.relevant * c.agent["relay"], cache_mib
    else:
        assert stats is not None
        size = 60 + 18 * stats.members_per_group
        told = c.relevant * stats.agents_per_change
        events, sent = 1 + told, c.full_bytes + told * size
        api = c.fixed + c.per_event + c.relevant * stats.groups_per_change * c.write
        api += told * c.per_group_event * size / max(c.agent["group_event_bytes"], 1)
        extra = 0.0  # the controller's compile is not measured here
        per_ip = c.agent["groups"] / c.agent["group_set"]
        agent = rate * told / nodes * per_ip * stats.members_per_group
        mib = c.memory["base"] + (stats.ips_per_node * 80 + 30 * 1024) / 2**20
    return {
        "events": events,
        "bytes": sent,
        "api_ms": api * 1000,
        "extra_ms": extra * 1000,
        "agent_pct": agent * 100,
        "agent_mib": mib,
    }


def measure(args: argparse.Namespace) -> Costs:
    work = Path(tempfile.mkdtemp(prefix="pwbench-scale-"))
    pods = [realistic_pod(n, f"node-{n % 100}") for n in range(args.pods)]
    namespaces = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"ns-{i}"}}
        for i in range(args.pods // 150 + 1)
    ]
    for rv, obj in enumerate(namespaces + pods, start=2):
        obj["metadata"]["resourceVersion"] = str(rv)
    state = {
        "resourceVersion": len(namespaces) + len(pods) + 2,
        "objects": {"/namespaces": namespaces, "/pods": pods},
    }
    (work / "state.json").write_text(json.dumps(state))
    server, url = spawn(
        state_file=str(work / "state.json"), extra=["--no-save", "--bookmark-interval", "5"]
    )
    try:
        kubeconfig = write_kubeconfig(str(work / "kubeconfig"), url)
        direct = [
            fan_out(url, "/api/v1/pods", w, Churn(url, pods, args.changes), server.pid)
            for w in args.watchers
        ]
        fixed, per_event = line(direct)
        relayed, _ = relay_fan_out(url, kubeconfig, pods, args.watchers, args.changes, server.pid)
        relay_fixed, relay_per_event = line(relayed)
        for point in direct + relayed:
            print(f"  measured: {point}")
    finally:
        server.terminate()
        server.wait(30)
    server, url = spawn(extra=["--bookmark-interval", "5"])
    try:
        quiet = groups_fan_out(url, args.group_nodes, args.changes, server.pid)
        print(f"  measured: {quiet[0]}")
    finally:
        server.terminate()
        server.wait(30)
    write = _write_cost(args)
    touched = quiet[1].groups_per_change
    per_group_event = max(quiet[0].server_cpu - touched * write, 0.0) / max(
        quiet[0].events * args.group_nodes, 1e-9
    )
    members = group_stats(Cluster.generate(5000), samples=2000).members_per_group
    return Costs(
        fixed,
        per_event,
        direct[-1].bytes,
        relay_fixed,
        relay_per_event,
        relayed[-1].events,
        relayed[-1].bytes,
        write,
        per_group_event,
        agent_cpu_per_event(pods[0], int(members)),
        agent_memory(args.memory_pods),
    )


def _write_cost(args: argparse.Namespace) -> float:
    """The double's CPU per group rewrite with no watcher selecting the group."""
    server, url = spawn(extra=["--bookmark-interval", "5"])
    try:
        nobody = "nobody.scale.podwall.io"
        point, stats = groups_fan_out(url, args.group_nodes, args.changes, server.pid, nobody)
        return point.server_cpu / max(stats.groups_per_change, 1e-9)
    finally:
        server.terminate()
        server.wait(30)


def table(costs: Costs, nodes: Sequence[int]) -> None:
    stats = {n: group_stats(Cluster.generate(n), samples=3000) for n in nodes}
    head = (
        f"{'design':7} {'nodes':>6} {'events/chg':>10} {'KB/chg':>9} {'API ms/chg':>10} "
        f"{'relay ms/chg':>12} {'agent %CPU':>10} {'agent MiB':>9}"
    )
    print("per pod change: watch events and KB the API server sends, the double's CPU for it,")
    print("the relays' CPU; per agent: CPU for its watch traffic at 100 changes/s per 150k pods")
    print("(decode + cache; syncs come on top, the same in every design) and memory")
    print(head)
    rows = {}
    for design in ("today", "relay", "groups"):
        for n in nodes:
            r = rows[design, n] = row(design, n, costs, stats[n])
            print(
                f"{design:7} {n:>6} {r['events']:>10.1f} {r['bytes'] / 1000:>9.1f} "
                f"{r['api_ms']:>10.2f} {r['extra_ms']:>12.2f} {r['agent_pct']:>10.2f} "
                f"{r['agent_mib']:>9.0f}"
            )
    last = max(nodes)
    for design in ("relay", "groups"):
        cut = rows["today", last]["events"] / rows[design, last]["events"]
        sent = rows["today", last]["bytes"] / rows[design, last]["bytes"]
        even = next((n for n in range(2, last + 1) if _cheaper(design, n, costs)), None)
        alone = next((n for n in range(2, last + 1) if _cheaper(design, n, costs, False)), None)
        print(
            f"{design}: {cut:.0f}x fewer watch events and {sent:.0f}x fewer bytes per pod "
            f"change at {last} nodes than today; the API server's CPU is lower than today's "
            f"from {alone} nodes, with the relays' own CPU added from {even} nodes"
        )
    local = group_stats(Cluster.generate(last, cross=False), samples=3000)
    print(
        f"groups with namespace-local peers only: {local.agents_per_change:.0f} agents per "
        f"relevant change at {last} nodes (with cross-namespace peers: "
        f"{stats[last].agents_per_change:.0f})"
    )


def _cheaper(design: str, nodes: int, costs: Costs, extra: bool = True) -> bool:
    stats = group_stats(Cluster.generate(nodes), samples=300) if design == "groups" else None
    mine, today = row(design, nodes, costs, stats), row("today", nodes, costs, None)
    return bool(mine["api_ms"] + (mine["extra_ms"] if extra else 0.0) < today["api_ms"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_scale")
    parser.add_argument("--pods", type=int, default=3000, help="pods in the double while measuring")
    parser.add_argument("--changes", type=int, default=300, help="pod changes per measurement")
    parser.add_argument("--watchers", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--group-nodes", type=int, default=40)
    parser.add_argument("--memory-pods", type=int, default=30_000)
    parser.add_argument("--nodes", type=int, nargs="+", default=[100, 500, 1000, 2000, 5000])
    args = parser.parse_args(argv)
    costs = measure(args)
    c, us = costs, 1e6
    print(
        f"measured: double {c.fixed * us:.0f} us per pod change + {c.per_event * us:.1f} us per "
        f"delivered event ({c.full_bytes:.0f} B); relay {c.relay_fixed * us:.0f} us + "
        f"{c.relay_per_event * us:.1f} us per event ({c.slim_bytes:.0f} B), {c.relevant:.2f} of "
        f"pod changes reach agents; group write {c.write * us:.0f} us, "
        f"{c.per_group_event * us:.1f} us per group event"
    )
    print(
        f"measured: agent per event today {costs.agent['today'] * 1e6:.1f} us, relay "
        f"{costs.agent['relay'] * 1e6:.1f} us, group of {costs.agent['group_set']:.0f} IPs "
        f"{costs.agent['groups'] * 1e6:.0f} us; agent memory {costs.memory['base']:.0f} MiB + "
        f"{costs.memory['per_pod']:.2f} KiB per pod"
    )
    table(costs, args.nodes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
