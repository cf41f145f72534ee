"""Probes: serve ports in a pod's netns and test reachability between netns.

``serve(ns, tcp=[80], udp=[53], sctp=[7777])`` starts one small server process
inside ``ns`` (``firewall_lab.probe_agent``) answering TCP (echo), UDP (echo)
and SCTP (raw INIT → INIT-ACK), IPv4 and IPv6.  ``probe_many`` tests many
``Probe(source_ns, Target(ip, port, protocol))`` at once: one agent process
per source netns handles that source's whole batch in parallel threads, and a
bounded pool runs the sources side by side.  A probe times out after
``timeout`` seconds and is retried ``retries`` times before it counts as
blocked.  ``matrix`` answers the lab's ``probe -o json`` question.

Does not create namespaces or rules; it only sends and answers packets.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import firewall_lab

Protocol = Literal["TCP", "UDP", "SCTP"]
PROTOCOLS: tuple[Protocol, ...] = ("TCP", "UDP", "SCTP")
DEFAULT_TIMEOUT = 0.4
DEFAULT_RETRIES = 1
MAX_PROCESSES = 8
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(firewall_lab.__file__)))


class ProbeError(Exception):
    """A probe server or probe process could not run."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where to send a probe: IP (v4 or v6), port and protocol."""

    ip: str
    port: int
    protocol: Protocol = "TCP"


@dataclass(frozen=True, slots=True)
class Probe:
    """One probe: from the network namespace ``source`` to ``target``."""

    source: str
    target: Target


def agent_argv(netns_name: str, *args: str) -> list[str]:
    """Run ``probe_agent`` inside ``netns_name``: ``python -S`` with only
    the repository on sys.path (the agent is stdlib-only)."""
    code = (
        f"import sys; sys.path.insert(0, {_ROOT!r}); "
        "from firewall_lab.probe_agent import main; sys.exit(main(sys.argv[1:]))"
    )
    return ["ip", "netns", "exec", netns_name, sys.executable, "-E", "-s", "-S", "-c", code, *args]


class Server:
    """A running probe server; ``stop()`` (or leaving ``with``) ends it."""

    def __init__(self, netns_name: str, process: subprocess.Popen[str]) -> None:
        self.netns = netns_name
        self.process = process

    def stop(self) -> None:
        if self.process.poll() is None:
            if self.process.stdin is not None:
                self.process.stdin.close()
            try:
                self.process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    netns_name: str,
    *,
    tcp: Sequence[int] = (),
    udp: Sequence[int] = (),
    sctp: Sequence[int] = (),
) -> Server:
    """Start a server in ``netns_name``; return once its ports are bound."""
    args = ["serve"]
    for name, ports in (("tcp", tcp), ("udp", udp), ("sctp", sctp)):
        if ports:
            args += [f"--{name}", ",".join(str(port) for port in ports)]
    process = subprocess.Popen(
        agent_argv(netns_name, *args),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if line != "ready":
        process.kill()
        _, stderr = process.communicate(timeout=5)
        raise ProbeError(f"probe server in {netns_name} did not start: {line} {stderr}".strip())
    return Server(netns_name, process)


def _run_batch(
    source: str, targets: Sequence[Target], *, timeout: float, retries: int
) -> list[bool]:
    payload = json.dumps([{"ip": t.ip, "port": t.port, "protocol": t.protocol} for t in targets])
    argv = agent_argv(source, "probe", "--timeout", str(timeout), "--retries", str(retries))
    budget = 10 + (timeout + 0.2) * (retries + 1) * (1 + len(targets) // 64)
    try:
        done = subprocess.run(
            argv, input=payload, capture_output=True, text=True, timeout=budget, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise ProbeError(f"probes from {source} did not finish in {budget:.0f}s") from exc
    if done.returncode != 0:
        raise ProbeError(f"probes from {source} failed: {done.stderr.strip()[-500:]}")
    answers = json.loads(done.stdout)
    if not isinstance(answers, list) or len(answers) != len(targets):
        raise ProbeError(f"probes from {source}: malformed answer {done.stdout[:200]!r}")
    return [bool(answer) for answer in answers]


def probe_many(
    probes: Iterable[Probe],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = DEFAULT_RETRIES,
    max_processes: int = MAX_PROCESSES,
) -> dict[Probe, bool]:
    """Run every probe; True where the target answered."""
    by_source: dict[str, list[Target]] = {}
    for item in dict.fromkeys(probes):
        by_source.setdefault(item.source, []).append(item.target)
    results: dict[Probe, bool] = {}
    workers = max(1, min(max_processes, len(by_source)))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {
            source: pool.submit(_run_batch, source, targets, timeout=timeout, retries=retries)
            for source, targets in by_source.items()
        }
        for source, future in futures.items():
            for target, ok in zip(by_source[source], future.result(), strict=True):
                results[Probe(source, target)] = ok
    return results


def probe(
    source: str,
    ip: str,
    port: int,
    protocol: Protocol = "TCP",
    *,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = DEFAULT_RETRIES,
) -> bool:
    """One probe from netns ``source``; True when ``ip:port`` answered."""
    item = Probe(source, Target(ip, port, protocol))
    return probe_many([item], timeout=timeout, retries=retries)[item]


def matrix(
    pods: Mapping[str, tuple[str, str]],
    *,
    port: int,
    protocol: Protocol = "TCP",
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = DEFAULT_RETRIES,
) -> dict[str, dict[str, bool]]:
    """Reachability of every ordered pair of distinct pods, each given as
    ``name → (netns, ip)``: ``{from: {to: bool}}``."""
    pairs = {
        (src, dst): Probe(pods[src][0], Target(pods[dst][1], port, protocol))
        for src in pods
        for dst in pods
        if src != dst
    }
    found = probe_many(pairs.values(), timeout=timeout, retries=retries)
    table: dict[str, dict[str, bool]] = {name: {} for name in pods}
    for (src, dst), item in pairs.items():
        table[src][dst] = found[item]
    return table
