"""Benchmark: podwall's CNI ADD and DEL against the reference ``firewall`` plugin.

In a throwaway node namespace, both plugins get the same dual-stack prevResult;
runs are interleaved (reference ADD, podwall ADD, reference DEL, podwall DEL)
so drift hits both alike.  Each run is a real process start, timed from spawn
to exit.  Prints medians and the ratio podwall/reference, then where podwall's
time goes: interpreter start-up and imports (separate runs), and a timeline of
a few ADD/DEL runs under ``strace`` (start-up until the first iptables tool
starts, the iptables tools, the rest).

podwall runs through the launcher ``podwall cni install`` writes
(``firewall_install.launcher.python_script``: ``#!<venv python> -IS`` with the
import paths spelled out).  ``--launch module`` runs ``python -m
firewall_plugin`` instead (with ``site``) for comparison; ``--launch bundle``
runs the host bundle that ``podwall cni install --bundle`` writes (``/bin/sh``
launcher, the bundled interpreter, sourceless ``.pyc`` files), as a node
without Python runs it.  ``--pods N`` first attaches N other pods with both
plugins, so ADD and DEL run on a node that already has pods (podwall then
rewrites a populated ``PODWALL-FORWARD``; without them each ADD creates it and
each DEL removes it).  ``--agent-rules`` first fills the node the way the agent
does on a busy node: ``bench.workload``'s cluster (100 local pods, 10,000
cluster pods, 500 NetworkPolicies, 50 FirewallRules) compiled with
``compile_node`` and written by ``Applier`` (~9k rules in ~800 chains per
family, with their ipsets), the 100 local pods' endpoint records in podwall's
state folder; ADD and DEL then run beside that ruleset.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from bench import workload
from firewall_install import launcher as executables
from firewall_lab import netns
from firewall_operator import applier, cluster, compiler
from firewall_plugin import endpoints, model
from firewall_plugin.backends import get_backend

REFERENCE = "/usr/lib/cni/firewall"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMELINE_RUNS = 5
AGENT_LOCAL_PODS = 100


def launcher(folder: str, mode: str) -> list[str]:
    """argv that starts the podwall plugin the way ``mode`` says."""
    if mode == "module":
        return [sys.executable, "-m", "firewall_plugin"]
    if mode == "bundle":
        bin_dir = os.path.join(folder, "bin")
        os.makedirs(bin_dir)
        executables.install_executable(bin_dir, bundled=True)
        return [os.path.join(bin_dir, "podwall")]
    path = os.path.join(folder, "podwall")
    with open(path, "w") as handle:
        handle.write(executables.python_script(executables.local_launch()))
    os.chmod(path, 0o755)
    return [path]


def prev_result(node: str, pod: int = 0) -> dict[str, Any]:
    """A bridge-style dual-stack result; ``pod`` picks the addresses."""
    v4, v6 = f"10.77.{pod // 250}.{pod % 250 + 5}/16", f"fd00:77::{pod + 5:x}/64"
    return {
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": "cni0"},
            {"name": "vethbench"},
            {"name": "eth0", "sandbox": netns.path(node)},
        ],
        "ips": [
            {"address": v4, "gateway": "10.77.0.1", "interface": 2},
            {"address": v6, "gateway": "fd00:77::1", "interface": 2},
        ],
    }


def plugin_env(command: str, container: str, config: dict[str, Any]) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container,
        "CNI_IFNAME": "eth0",
        "CNI_NETNS": config["prevResult"]["interfaces"][2]["sandbox"],
        "CNI_PATH": "/usr/lib/cni",
        "CNI_ARGS": "K8S_POD_NAMESPACE=bench;K8S_POD_NAME=pod",
    }


def timed(
    argv: list[str], command: str, container: str, config: dict[str, Any]
) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the plugin and every process it ran)."""
    env = plugin_env(command, container, config)
    text = json.dumps(config)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, input=text, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} {command} failed: {done.stdout} {done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


Times = dict[str, list[tuple[float, float]]]
#: per verb, per traced run: (start-up ms, iptables tools ms, rest ms, tools run)
Timeline = dict[str, list[tuple[float, float, float, int]]]


def configs(
    tmp: str, node: str, pod: int, backend: str = "auto"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The (reference, podwall) plugin configurations for pod number ``pod``."""
    prev = prev_result(node, pod)
    ref = {"cniVersion": "1.0.0", "name": "bench", "type": "firewall", "prevResult": prev}
    pw = {
        "cniVersion": "1.0.0",
        "name": "bench",
        "type": "podwall",
        "backend": backend,
        "stateDir": f"{tmp}/state",
        "runDir": f"{tmp}/run",
        "prevResult": prev,
    }
    return ref, pw


AgentState = dict[model.Family, model.FamilyState]


def agent_state(local: int) -> AgentState:
    """What the agent would write on node-0 of ``bench.workload``'s cluster."""
    snapshot = cluster.Snapshot.from_documents(workload.cluster_documents(local=local))
    return dict(compiler.compile_node(snapshot, workload.records(local)).families)


def load_agent_rules(tmp: str, backend: str, state: AgentState, local: int) -> str:
    """Inside the node: the local pods' records, then the agent's write of
    ``state`` with ``backend``.  Returns a one-line summary."""
    for record in workload.records(local):
        endpoints.write(f"{tmp}/state", record)
    the = applier.Applier(get_backend(backend), run_dir=f"{tmp}/run", state_dir=f"{tmp}/state")
    stats = the.apply(state)
    return (
        f"agent wrote {stats.chains_written} chains, {stats.rules_written} rules, "
        f"{stats.sets_written} sets ({stats.set_entries_written} entries) in "
        f"{stats.total_seconds * 1000:.0f} ms"
    )


def run_series(
    node: str, runs: int, mode: str, pods: int, agent: AgentState | None, backend: str
) -> tuple[Times, Timeline, str]:
    """Inside ``node``: interleaved ADD/DEL of both plugins, ``runs`` times,
    with ``pods`` other pods attached (and the agent's rules written first
    when ``agent`` is given); then a few podwall runs under strace."""
    keys = ("ref ADD", "pw ADD", "ref DEL", "pw DEL")
    times: Times = {key: [] for key in keys}
    timeline: Timeline = {"ADD": [], "DEL": []}
    summary = ""
    with tempfile.TemporaryDirectory(prefix="pwbench-") as tmp:
        podwall = launcher(tmp, mode)
        if agent is not None:
            agent_backend = "iptables-nft" if backend == "auto" else backend
            summary = load_agent_rules(tmp, agent_backend, agent, AGENT_LOCAL_PODS)
        ref, pw = configs(tmp, node, 0, backend)
        timed(podwall, "ADD", "warmup", pw)  # detects the backend once, like a node's first pod
        timed(podwall, "DEL", "warmup", pw)
        for pod in range(1, pods + 1):
            other_ref, other_pw = configs(tmp, node, pod, backend)
            timed([REFERENCE], "ADD", f"other{pod}", other_ref)
            timed(podwall, "ADD", f"other{pod}", other_pw)
        for i in range(runs):
            container = f"bench{i}"
            times["ref ADD"].append(timed([REFERENCE], "ADD", container, ref))
            times["pw ADD"].append(timed(podwall, "ADD", container, pw))
            times["ref DEL"].append(timed([REFERENCE], "DEL", container, ref))
            times["pw DEL"].append(timed(podwall, "DEL", container, pw))
        if shutil.which("strace"):
            for i in range(TIMELINE_RUNS):
                for verb in ("ADD", "DEL"):
                    timeline[verb].append(traced(podwall, verb, f"traced{i}", pw, tmp))
    return times, timeline, summary


def traced(
    argv: list[str], command: str, container: str, config: dict[str, Any], folder: str
) -> tuple[float, float, float, int]:
    """One run under ``strace -f``, cut into phases (see ``phases``)."""
    out = os.path.join(folder, "strace.out")
    subprocess.run(
        ["strace", "--seccomp-bpf", "-f", "-ttt", "-e", "trace=execve", "-o", out, *argv],
        input=json.dumps(config),
        env=plugin_env(command, container, config),
        capture_output=True,
        text=True,
        check=True,
    )
    with open(out) as handle:
        return phases(handle.read())


def phases(trace: str) -> tuple[float, float, float, int]:
    """From ``strace -f -ttt -e trace=execve`` output: ms from the plugin's
    start to its first child (interpreter, imports, config, lock, record), from
    then to the last child's exit (the iptables tools), and from then to the
    plugin's exit; and the number of children."""
    first: dict[str, float] = {}
    exits: dict[str, float] = {}
    programs: set[str] = set()  # not the plugin's own threads
    for line in trace.splitlines():
        pid, stamp, rest = line.split(None, 2)
        first.setdefault(pid, float(stamp))
        if rest.startswith("execve("):
            programs.add(pid)
        elif rest.startswith("+++ exited") or rest.startswith("+++ killed"):
            exits[pid] = float(stamp)
    plugin = next(iter(first))
    children = [pid for pid in programs if pid != plugin and pid in exits]
    if not children:
        return (exits[plugin] - first[plugin]) * 1000, 0.0, 0.0, 0
    begin = min(first[pid] for pid in children)
    end = max(exits[pid] for pid in children)
    spans = (begin - first[plugin], end - begin, exits[plugin] - end)
    return spans[0] * 1000, spans[1] * 1000, spans[2] * 1000, len(children)


def startup_costs(runs: int) -> dict[str, float]:
    """Median ms of a bare ``-IS`` interpreter and of importing the ADD path
    with the launcher's import paths."""
    base = [sys.executable, "-IS", "-c"]
    paths = list(executables.local_launch().sys_path)
    imports = (
        f"import sys; sys.path[:0] = {paths!r}; import firewall_plugin.cni, "
        "firewall_plugin.config, firewall_plugin.commands, firewall_plugin.backends.restore"
    )
    codes = {"python -IS start": "pass", "+ ADD-path imports": imports}
    samples: dict[str, list[float]] = {label: [] for label in codes}
    for _ in range(runs):  # interleaved, like the plugin runs
        for label, code in codes.items():
            start = time.perf_counter()
            subprocess.run([*base, code], check=True)
            samples[label].append(time.perf_counter() - start)
    return {label: statistics.median(values) * 1000 for label, values in samples.items()}


def print_timeline(timeline: Timeline) -> None:
    for verb, runs in timeline.items():
        if not runs:
            continue
        start, tools, rest = (statistics.median(run[i] for run in runs) for i in range(3))
        count = statistics.median(run[3] for run in runs)
        print(
            f"  podwall {verb} under strace ({len(runs)} runs): start-up {start:5.1f} ms "
            f"(interpreter, imports, config, lock), {count:.0f} iptables runs {tools:5.1f} ms, "
            f"rest {rest:4.1f} ms"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.bench_plugin", description=__doc__)
    parser.add_argument("--runs", type=int, default=25)
    parser.add_argument("--launch", choices=("launcher", "module", "bundle"), default="launcher")
    parser.add_argument("--pods", type=int, default=0, help="other pods on the node")
    parser.add_argument(
        "--agent-rules",
        action="store_true",
        help="first fill the node with the agent's rules for bench.workload's cluster",
    )
    parser.add_argument(
        "--backend",
        default="auto",
        choices=("auto", "iptables-nft", "iptables-legacy"),
        help="podwall's backend (and the agent's; auto: nft for the agent)",
    )
    args = parser.parse_args(argv)
    if not os.path.exists(REFERENCE):
        print(f"bench_plugin: skipped, {REFERENCE} not installed")
        return 0
    agent = agent_state(AGENT_LOCAL_PODS) if args.agent_rules else None
    node = netns.create(netns.unique_name("pwbench"), sysctls={"net.ipv4.ip_forward": "1"})
    try:
        times, timeline, summary = netns.call(
            node, run_series, node, args.runs, args.launch, args.pods, agent, args.backend,
            timeout=900,
        )  # fmt: skip
    finally:
        netns.delete(node)
    wall = {key: statistics.median(w for w, _ in values) * 1000 for key, values in times.items()}
    cpu = {key: statistics.median(c for _, c in values) * 1000 for key, values in times.items()}
    print(
        f"CNI plugin, dual-stack prevResult, {args.runs} interleaved runs, "
        f"launch={args.launch}, backend={args.backend}, {args.pods} other pods on the node"
    )
    if summary:
        print(f"  {summary}")
    print(f"  load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (wall times suffer)")
    for verb in ("ADD", "DEL"):
        for label, med in (("wall", wall), ("cpu ", cpu)):
            ref, pw = med[f"ref {verb}"], med[f"pw {verb}"]
            print(
                f"  {verb} {label}: reference {ref:6.1f} ms  podwall {pw:6.1f} ms  "
                f"ratio {pw / ref:4.2f}"
            )
    for label, value in startup_costs(max(args.runs, 10)).items():
        print(f"  {label}: {value:5.1f} ms")
    print_timeline(timeline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
