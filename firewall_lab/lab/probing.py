"""Reachability in a running lab: probed from the pods, and expected by explain.

``kernel_matrix`` probes every ordered pair of running pods (self pairs too)
from the pods' own namespaces, all at once from bounded worker threads that
each enter the source pod's namespace (``probe_agent.probe_outcome`` does the
TCP/UDP/raw-SCTP exchange).  ``model_matrix`` asks
``firewall_operator.evaluate`` about the objects stored in the lab's API;
both return the ``probe -o json`` shape (``port``, ``protocol``, ``pods``,
``reachable``, ``family``); the kernel's also has ``outcomes``: ``open``,
``refused`` (reached, nothing listening), ``unreachable`` or ``dropped``.
``differences`` lists the pairs where they disagree: a refused probe
passed the firewall (the lab's podwall drops, it never rejects).  Sends
packets; writes nothing.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Mapping
from typing import Any

from firewall_lab import netns, probe, probe_agent
from firewall_lab.lab.client import Client, items_of
from firewall_lab.lab.errors import LabError
from firewall_lab.lab.layout import Layout
from firewall_lab.lab.ops import WATCHED, running_pods

Json = dict[str, Any]
MAX_THREADS = 256


def _ip(ips: list[str], family: str) -> str | None:
    wanted = [ip for ip in ips if (":" in ip) == (family == "ipv6")]
    return wanted[0] if wanted else None


def _probe_from(source: str, target: probe.Target, timeout: float, retries: int) -> str:
    """In a worker thread: enter ``source`` (this thread only) and probe."""
    netns.enter(source)
    return probe_agent.probe_outcome(
        target.ip, target.port, target.protocol, timeout=timeout, retries=retries
    )


def probe_pairs(
    pairs: Mapping[tuple[str, str], probe.Probe], *, timeout: float, retries: int
) -> dict[tuple[str, str], str]:
    """Every probe at once, each from a thread inside its source namespace
    (no process per source: a 9x9 matrix costs one probe timeout, not nine
    process starts).  The worker threads die with the pool."""
    workers = max(1, min(MAX_THREADS, len(pairs)))
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="probe") as pool:
        futures = {
            key: pool.submit(_probe_from, item.source, item.target, timeout, retries)
            for key, item in pairs.items()
        }
        return {key: future.result() for key, future in futures.items()}


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
    found = probe_pairs(pairs, timeout=timeout, retries=retries)
    outcomes = {src: {dst: found[(src, dst)] for dst in keys} for src in keys}
    reachable = {
        src: {dst: got == "open" for dst, got in row.items()} for src, row in outcomes.items()
    }
    return {
        "port": port,
        "protocol": protocol,
        "pods": keys,
        "reachable": reachable,
        "family": family,
        "outcomes": outcomes,
    }


def lab_documents(client: Client) -> list[Json]:
    return items_of(client, WATCHED)


def model_matrix(client: Client, *, port: int, protocol: str, family: str = "ipv4") -> Json:
    from firewall_operator import cluster, evaluate

    snapshot = cluster.Snapshot.from_documents(lab_documents(client))
    found: Json = evaluate.matrix(
        snapshot,
        port=port,
        protocol=protocol,
        family="ipv6" if family == "ipv6" else "ipv4",
    )
    found["family"] = family
    return found


OUTCOME_TEXT = {
    "open": "open",
    "refused": "refused (reached, nothing listening)",
    "unreachable": "unreachable (an ICMP error came back)",
    "dropped": "dropped (no answer)",
}


def _passed(kernel: Mapping[str, Any], src: str, dst: str) -> tuple[bool, str]:
    """Did the probe pass the firewall, and how did it end?"""
    outcome = (kernel.get("outcomes") or {}).get(src, {}).get(dst)
    if outcome is None:
        outcome = "open" if kernel["reachable"][src][dst] else "dropped"
    return outcome in ("open", "refused"), OUTCOME_TEXT.get(outcome, outcome)


def differences(kernel: Mapping[str, Any], model: Mapping[str, Any]) -> list[str]:
    """``src -> dst: kernel dropped (no answer), explain open`` for every
    disagreement over the pods both know (a pod missing on one side is
    reported too).  A refused probe passed the firewall: it agrees with open."""
    lines: list[str] = []
    k_pods, m_pods = set(kernel["pods"]), set(model["pods"])
    lines += [f"{pod}: probed, but not in the API objects" for pod in sorted(k_pods - m_pods)]
    lines += [f"{pod}: in the API objects, but not running" for pod in sorted(m_pods - k_pods)]
    for src in sorted(k_pods & m_pods):
        for dst in sorted(k_pods & m_pods):
            passed, how = _passed(kernel, src, dst)
            expected = model["reachable"][src][dst]
            if passed != expected:
                lines.append(
                    f"{src} -> {dst}: kernel {how}, explain {'open' if expected else 'blocked'}"
                )
    return lines
