"""Benchmark: podwall's CNI ADD and DEL against the reference ``firewall`` plugin.

In a throwaway node namespace, both plugins get the same dual-stack prevResult;
runs are interleaved (reference ADD, podwall ADD, reference DEL, podwall DEL)
so drift hits both alike.  Each run is a real process start, timed from spawn
to exit.  Prints medians and the ratio podwall/reference, plus where podwall's
time goes (interpreter start-up, imports, the rest).

podwall runs through a launcher like the one ``podwall cni install`` writes:
``#!<venv python> -IS`` (isolated, no ``site``) that puts the package folder on
``sys.path`` itself.  ``--launch module`` runs ``python -m firewall_plugin``
instead (with ``site``: the editable install's path hooks) for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from firewall_lab import netns

REFERENCE = "/usr/lib/cni/firewall"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
V4, V6 = "10.77.0.5/24", "fd00:77::5/64"


def launcher(folder: str, mode: str) -> list[str]:
    """argv that starts the podwall plugin the way ``mode`` says."""
    if mode == "module":
        return [sys.executable, "-m", "firewall_plugin"]
    path = os.path.join(folder, "podwall")
    with open(path, "w") as handle:
        handle.write(
            f"#!{sys.executable} -IS\nimport sys\nsys.path.insert(0, {ROOT!r})\n"
            "from firewall_plugin.cni import run_and_exit\nrun_and_exit()\n"
        )
    os.chmod(path, 0o755)
    return [path]


def prev_result(node: str) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": "cni0"},
            {"name": "vethbench"},
            {"name": "eth0", "sandbox": netns.path(node)},
        ],
        "ips": [
            {"address": V4, "gateway": "10.77.0.1", "interface": 2},
            {"address": V6, "gateway": "fd00:77::1", "interface": 2},
        ],
    }


def timed(
    argv: list[str], command: str, container: str, config: dict[str, Any]
) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the plugin and every process it ran)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container,
        "CNI_IFNAME": "eth0",
        "CNI_NETNS": config["prevResult"]["interfaces"][2]["sandbox"],
        "CNI_PATH": "/usr/lib/cni",
        "CNI_ARGS": "K8S_POD_NAMESPACE=bench;K8S_POD_NAME=pod",
    }
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


def run_series(node: str, runs: int, mode: str) -> dict[str, list[tuple[float, float]]]:
    """Inside ``node``: interleaved ADD/DEL of both plugins, ``runs`` times."""
    keys = ("ref ADD", "pw ADD", "ref DEL", "pw DEL")
    times: dict[str, list[tuple[float, float]]] = {key: [] for key in keys}
    with tempfile.TemporaryDirectory(prefix="pwbench-") as tmp:
        podwall = launcher(tmp, mode)
        prev = prev_result(node)
        ref = {"cniVersion": "1.0.0", "name": "bench", "type": "firewall", "prevResult": prev}
        pw = {
            "cniVersion": "1.0.0",
            "name": "bench",
            "type": "podwall",
            "stateDir": f"{tmp}/state",
            "runDir": f"{tmp}/run",
            "prevResult": prev,
        }
        timed(podwall, "ADD", "warmup", pw)  # detects the backend once, like a node's first pod
        timed(podwall, "DEL", "warmup", pw)
        for i in range(runs):
            container = f"bench{i}"
            times["ref ADD"].append(timed([REFERENCE], "ADD", container, ref))
            times["pw ADD"].append(timed(podwall, "ADD", container, pw))
            times["ref DEL"].append(timed([REFERENCE], "DEL", container, ref))
            times["pw DEL"].append(timed(podwall, "DEL", container, pw))
    return times


def startup_costs(runs: int) -> dict[str, float]:
    """Median ms of a bare ``-IS`` interpreter and of importing the ADD path."""
    base = [sys.executable, "-IS", "-c"]
    imports = (
        f"import sys; sys.path.insert(0, {ROOT!r}); import firewall_plugin.cni, "
        "firewall_plugin.config, firewall_plugin.commands, firewall_plugin.backends.restore"
    )
    out = {}
    for label, code in (("python -IS start", "pass"), ("+ ADD-path imports", imports)):
        samples = []
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run([*base, code], check=True)
            samples.append(time.perf_counter() - start)
        out[label] = statistics.median(samples) * 1000
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.bench_plugin", description=__doc__)
    parser.add_argument("--runs", type=int, default=25)
    parser.add_argument("--launch", choices=("launcher", "module"), default="launcher")
    args = parser.parse_args(argv)
    if not os.path.exists(REFERENCE):
        print(f"bench_plugin: skipped, {REFERENCE} not installed")
        return 0
    node = netns.create(netns.unique_name("pwbench"), sysctls={"net.ipv4.ip_forward": "1"})
    try:
        times = netns.call(node, run_series, node, args.runs, args.launch, timeout=600)
    finally:
        netns.delete(node)
    wall = {key: statistics.median(w for w, _ in values) * 1000 for key, values in times.items()}
    cpu = {key: statistics.median(c for _, c in values) * 1000 for key, values in times.items()}
    print(f"CNI plugin, dual-stack prevResult, {args.runs} interleaved runs, launch={args.launch}")
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
