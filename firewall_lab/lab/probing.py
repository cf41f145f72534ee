"""Reachability in a running lab: probed from the pods, and expected by explain.

``kernel_matrix`` probes every ordered pair of running pods (self pairs too)
from the pods' own namespaces, in parallel and bounded (``firewall_lab.probe``:
one probe process per source pod, threads inside).  ``model_matrix`` asks
``firewall_operator.evaluate`` about the objects stored in the lab's API;
both return the ``probe -o json`` shape.  ``differences`` lists the pairs
where they disagree.  Sends packets; writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from firewall_lab import probe
from firewall_lab.lab.client import Client
from firewall_lab.lab.errors import LabError
from firewall_lab.lab.layout import Layout
from firewall_lab.lab.ops import running_pods

Json = dict[str, Any]
WATCHED = ("Namespace", "Pod", "NetworkPolicy", "FirewallRule")


def _ip(ips: list[str], family: str) -> str | None:
    wanted = [ip for ip in ips if (":" in ip) == (family == "ipv6")]
    return wanted[0] if wanted else None


def kernel_matrix(
    layout: Layout,
    *,
    port: int,
    protocol: probe.Protocol,
    family: str = "ipv4",
    timeout: float = probe.DEFAULT_TIMEOUT,
    retries: int = probe.DEFAULT_RETRIES,
) -> Json:
    pods = running_pods(layout)
    keys = sorted(pods)
    pairs: dict[tuple[str, str], probe.Probe] = {}
    for dst in keys:
        ip = _ip(pods[dst]["ips"], family)
        if ip is None:
            raise LabError(f"pod {dst} has no {family} address (is the lab --ipv6?)")
        for src in keys:
            pairs[(src, dst)] = probe.Probe(pods[src]["netns"], probe.Target(ip, port, protocol))
    sources = len(keys) or 1
    found = probe.probe_many(
        pairs.values(), timeout=timeout, retries=retries, max_processes=max(sources, 8)
    )
    reachable = {src: {dst: found[pairs[(src, dst)]] for dst in keys} for src in keys}
    return {"port": port, "protocol": protocol, "pods": keys, "reachable": reachable}


def lab_documents(client: Client) -> list[Json]:
    return [item for kind in WATCHED for item in client.list(kind).get("items") or []]


def model_matrix(client: Client, *, port: int, protocol: str, family: str = "ipv4") -> Json:
    from firewall_operator import cluster, evaluate

    snapshot = cluster.Snapshot.from_documents(lab_documents(client))
    found: Json = evaluate.matrix(
        snapshot,
        port=port,
        protocol=protocol,
        family="ipv6" if family == "ipv6" else "ipv4",
    )
    return found


def differences(kernel: Mapping[str, Any], model: Mapping[str, Any]) -> list[str]:
    """``src -> dst: kernel open, explain blocked`` for every disagreement
    over the pods both know (a pod missing on one side is reported too)."""
    lines: list[str] = []
    k_pods, m_pods = set(kernel["pods"]), set(model["pods"])
    lines += [f"{pod}: probed, but not in the API objects" for pod in sorted(k_pods - m_pods)]
    lines += [f"{pod}: in the API objects, but not running" for pod in sorted(m_pods - k_pods)]
    for src in sorted(k_pods & m_pods):
        for dst in sorted(k_pods & m_pods):
            probed, expected = kernel["reachable"][src][dst], model["reachable"][src][dst]
            if probed != expected:
                lines.append(
                    f"{src} -> {dst}: kernel {'open' if probed else 'blocked'}, "
                    f"explain {'open' if expected else 'blocked'}"
                )
    return lines
