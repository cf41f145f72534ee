"""``podwall lab demo``: the guided tour, in under a minute.

Builds a 2-node lab with the cluster of ``examples/demo-cluster.yaml``, shows
the 80/TCP reachability matrix probed from the pods, applies the policies of
``examples/policies/`` (a default-deny, an allow from a namespace, a
named-port rule, a FirewallRule Deny overriding an allow), shows the matrix
again with the changed cells marked, explains one blocked pair with the same
semantics ``podwall explain`` uses, checks that the kernel agrees with
explain on every pair, shows a denied connection from the agents' traffic
log when the nodes' rules log one, and tears the lab down (``keep_dir``: leaves it up
there, and says how to use kubectl against it).  Prints progress on stderr
while it builds.  Output only; the lab work is in ``ops``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import time
from typing import Any

import firewall_lab
from firewall_lab.lab import ops, probing, render, teardown
from firewall_lab.lab.client import Client
from firewall_lab.lab.errors import LabError
from firewall_lab.lab.layout import Layout

EXAMPLES = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(firewall_lab.__file__))), "examples"
)
PORT = 80
Json = dict[str, Any]
EXPLAINED = ("web/frontend", "api/payments")


def _out(text: str = "") -> None:
    print(text, flush=True)


def _progress(text: str) -> None:
    print(f"  .. {text}", file=sys.stderr, flush=True)


def _evaluator(client: Client) -> Any:
    from firewall_operator import cluster, evaluate

    snapshot = cluster.Snapshot.from_documents(probing.lab_documents(client))
    return evaluate.Evaluator(snapshot), {pod.key: pod for pod in snapshot.pods}


def explain_pair(client: Client, source: str, destination: str) -> str:
    from firewall_operator import explain

    evaluator, pods = _evaluator(client)
    verdict = evaluator.verdict(pods[source], pods[destination], PORT, "TCP")
    return str(explain.verdict_text(verdict))


def why_changed(client: Client, before: Json, after: Json, colour: bool) -> list[str]:
    """One sentence per reason, naming every pair it changed ("denied:
    api/orders is isolated for ingress by NetworkPolicy api/default-deny, and
    no rule allows web/frontend, web/admin")."""
    from firewall_operator import explain

    evaluator, pods = _evaluator(client)
    peers: dict[str, list[str]] = {}
    for src, dst in render.changed_pairs(before, after):
        verdict = evaluator.verdict(pods[src], pods[dst], PORT, "TCP")
        side = verdict.egress if not verdict.egress.allowed else verdict.ingress
        key = explain.sentence(dataclasses.replace(side, peer="\0"))
        peers.setdefault(key, []).append(side.peer)
    total = sum(len(found) for found in peers.values())
    lines = [render.paint(f"{total} pairs changed (marked *), because:", render.BOLD, colour)]
    for key, found in sorted(peers.items(), key=lambda item: -len(item[1])):
        lines.append("  " + key.replace("\0", ", ".join(found)))
    return lines


def denial_lines(directory: str, *, wait: float = 1.0) -> list[str]:
    """One logged denial from the agents' traffic log, when the nodes' rules
    log (the api namespace's default-deny asks for it); nothing otherwise."""
    from firewall_lab.lab import trafficlogs

    deadline = time.monotonic() + wait
    while True:
        found = [json.loads(line) for line in trafficlogs.lines(directory)]
        denied = [f for f in found if f.get("verdict") == "deny"]
        if denied or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    if not denied:
        return []
    first = denied[0]
    return [
        f"\nthe traffic log (podwall lab logs) has {len(denied)} denied connections, e.g.:",
        "  " + json.dumps(first, separators=(",", ":")),
    ]


def tour(directory: str, colour: bool) -> None:
    cluster_file = os.path.join(EXAMPLES, "demo-cluster.yaml")
    policies = os.path.join(EXAMPLES, "policies")
    _out(
        render.paint(
            "podwall demo: NetworkPolicy and FirewallRule on a 2-node lab", render.BOLD, colour
        )
    )
    _out("building the lab (2 node namespaces, bridge + podwall CNI, an agent per node)...")
    ops.up(directory, files=[cluster_file], say=_progress)
    recorded, client = ops.client_for(directory)
    layout: Layout = recorded.layout(os.path.abspath(directory))
    before = probing.kernel_matrix(layout, port=PORT, protocol="TCP")
    _out("\nBEFORE: no policies; every pod reaches every pod")
    _out(render.matrix_table(before, colour=colour))
    _out(f"applying {policies}:")
    for name in sorted(os.listdir(policies)):
        _out(f"  - {name}")
    ops.apply(directory, [policies], say=_progress)
    after = probing.kernel_matrix(layout, port=PORT, protocol="TCP")
    _out("\nAFTER: probed from the pods through the kernel")
    _out(render.matrix_table(after, colour=colour, before=before))
    for line in why_changed(client, before, after, colour):
        _out(line)
    source, destination = EXPLAINED
    _out(f"\nwhy is {source} -> {destination} blocked?  (podwall explain)")
    _out(explain_pair(client, source, destination))
    for line in denial_lines(directory):
        _out(line)
    model = probing.model_matrix(client, port=PORT, protocol="TCP")
    wrong = probing.differences(after, model)
    count = len(after["pods"]) ** 2
    verdict = "agrees" if not wrong else f"DISAGREES on {len(wrong)} pairs"
    _out(f"the kernel {verdict} with `podwall explain --matrix` on all {count} pairs")
    for line in wrong:
        _out(f"  {line}")


def run_demo(*, keep_dir: str | None = None, colour: bool | None = None) -> int:
    colour = sys.stdout.isatty() if colour is None else colour
    started = time.monotonic()
    directory = keep_dir or os.path.join(tempfile.mkdtemp(prefix="podwall-demo-"), "lab")
    try:
        tour(directory, colour)
    except LabError as exc:
        print(f"podwall demo: {exc}", file=sys.stderr)
        _down(directory)
        return 1
    except BaseException:
        _down(directory)
        raise
    if keep_dir:
        _out(f"\nthe lab stays up in {keep_dir}:")
        _out(f"  export KUBECONFIG={keep_dir}/kubeconfig; kubectl get pods -A -o wide")
        _out("  kubectl get networkpolicies -A; kubectl get firewallrules")
        _out(f"  podwall lab probe --dir {keep_dir} --port 80 --protocol TCP")
        _out(f"  podwall lab down --dir {keep_dir}")
    else:
        _out("\ntearing the lab down...")
        _down(directory)
        _out("to keep the lab up and use kubectl against it: podwall lab demo --dir DIR")
    _out(f"done in {time.monotonic() - started:.0f}s")
    return 0


def _down(directory: str) -> None:
    try:
        teardown.down(directory)
    except LabError:
        return
    parent = os.path.dirname(directory)
    if os.path.basename(parent).startswith("podwall-demo-"):
        os.rmdir(parent)
