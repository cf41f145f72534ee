"""``python -m bench.scale_memory PODS``: an agent's memory for a cluster of PODS pods.

Prints one JSON line: the RSS (MiB) after importing the agent, and the KiB
per pod that its slim cache and the compiler's index take (bench_agent's
cluster, 20 local endpoints).  Benchmark support for ``bench_scale`` only.
"""

from __future__ import annotations

import argparse
import json
import sys

sys.modules.setdefault("kubernetes", None)  # type: ignore[arg-type]  # as podwall agent does
import firewall_operator.agent.main  # noqa: E402, F401 - what the agent imports
from bench import bench_agent  # noqa: E402
from firewall_operator import compiler  # noqa: E402
from firewall_operator.agent.cache import ClusterCache  # noqa: E402
from firewall_plugin import endpoints  # noqa: E402

KINDS = {
    "/namespaces": "namespaces",
    "/pods": "pods",
    "networking.k8s.io/networkpolicies": "networkpolicies",
}


def rss() -> float:
    with open("/proc/self/status") as handle:
        line = next(line for line in handle if line.startswith("VmRSS"))
    return int(line.split()[1]) / 1024


def main(pods: int) -> None:
    base = rss()
    args = argparse.Namespace(pods=pods, policies=1000, namespaces=100, local=20)
    state, local = bench_agent.build_state(args)
    raw = {key: [json.dumps(obj) for obj in objs] for key, objs in state["objects"].items()}
    del state
    mark = rss()
    cache = ClusterCache(node=bench_agent.NODE)
    for key, kind in KINDS.items():
        present: set[tuple[str, str]] = set()
        for text in raw[key]:
            cache.relist_item(kind, json.loads(text), present)  # type: ignore[arg-type]
        cache.relist_finish(kind, present, "999999999")  # type: ignore[arg-type]
    records = [
        endpoints.EndpointRecord.make(
            container_id=f"c{n}",
            ifname="eth0",
            podNamespace=obj["metadata"]["namespace"],
            podName=obj["metadata"]["name"],
            podUID=obj["metadata"]["uid"],
            ips=(obj["status"]["podIP"] + "/32",),  # records hold interface addresses
        )
        for n, obj in enumerate(local)
    ]
    compiler.Compiler(deny_action="drop", unknown_pod="deny").compile(cache.snapshot(), records)
    print(json.dumps({"base": base, "per_pod": (rss() - mark) * 1024 / pods}))


if __name__ == "__main__":
    main(int(sys.argv[1]))
