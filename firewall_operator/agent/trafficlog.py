"""The agent's traffic log: NFLOG packets → one JSON line each.

A reader thread owns an ``nflog.NflogSocket`` (created in the agent's
network namespace: the node's) and turns every packet logged with a podwall
tag (``logtags``) into one JSON object (``line``): time, node, direction,
verdict, tier, policy, rule, the pod whose rule it was, source and destination
(IP, port, and the pod ``ns/name`` when an IP belongs to a known pod),
protocol and the tag.  A tag the resolver does not know keeps its tag and
nulls for what it would have said.  Prefixes that are not podwall's are
skipped (another tool's rules in the same group).

Never blocking the data path: the kernel drops NFLOG copies nobody reads
(``overruns``: the socket's buffer was full), and the reader hands lines to a
bounded queue that drops (``dropped``) instead of waiting for a slow writer.
The verdict is the rule's, whatever happens here.  The resolver and the pods
are replaced whole from the event loop (``set_resolver``, ``set_pods``: a
snapshot's immutable pods tuple), so the reader thread never reads the
agent's cache; the IP → pod directory is built from the latest pods by the
reader, when a packet needs it (building it for 100k pods after every sync
held the event loop for a third of a second).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import queue
import sys
import threading
from collections.abc import Iterable
from typing import IO, Any

from firewall_operator import cluster, logtags
from firewall_operator.agent import nflog

log = logging.getLogger(__name__)
DEFAULT_GROUP = 0x5057  # 20567, "PW"
QUEUE_SIZE = 10_000
Json = dict[str, Any]


def _endpoint(ip: str, port: int | None, pods: dict[str, str]) -> Json:
    return {"ip": ip or None, "port": port, "pod": pods.get(ip)}


def line(
    packet: nflog.LoggedPacket,
    tag: logtags.LogTag | None,
    *,
    node: str,
    pods: dict[str, str],
) -> Json:
    """The JSON object of one logged packet (see module doc)."""
    stamp = datetime.datetime.fromtimestamp(packet.time, datetime.UTC)
    return {
        "time": stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "node": node,
        "direction": tag.direction if tag else None,
        "verdict": tag.verdict if tag else None,
        "tier": tag.tier if tag else None,
        "policy": tag.policy if tag else None,
        "rule": (tag.rule or None) if tag else None,
        "pod": (tag.pod or None) if tag else None,
        "source": _endpoint(packet.source, packet.source_port, pods),
        "destination": _endpoint(packet.destination, packet.destination_port, pods),
        "protocol": packet.protocol or None,
        "family": packet.family or None,
        "tag": packet.prefix,
    }


def pod_directory(pods: Iterable[cluster.Pod]) -> dict[str, str]:
    """IP → ``ns/name`` of every pod that has one (hostNetwork pods left out:
    their IPs are the node's)."""
    return {ip: pod.key for pod in pods if not pod.host_network for ip in pod.ips}


class TrafficLog:
    """Reader and writer threads for one NFLOG group (see module doc)."""

    def __init__(
        self,
        *,
        group: int,
        node: str,
        output: IO[str] | None = None,
        resolve: logtags.Resolver = logtags.no_tags,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self.group, self.node = group, node
        self.output = output or sys.stdout
        self.resolve: logtags.Resolver = resolve
        self.pods: dict[str, str] = {}
        self._last_pods: object = None
        self._latest_pods: Iterable[cluster.Pod] = ()
        self.lines = self.dropped = self.foreign = 0
        self.socket: nflog.NflogSocket | None = None
        self._queue: queue.Queue[str | None] = queue.Queue(queue_size)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def overruns(self) -> int:
        return self.socket.overruns if self.socket is not None else 0

    def set_resolver(self, resolve: logtags.Resolver) -> None:
        self.resolve = resolve

    def set_pods(self, pods: Iterable[cluster.Pod]) -> None:
        self._latest_pods = pods  # O(1): the directory waits for a packet that needs it

    def directory(self) -> dict[str, str]:
        """IP → pod of the latest pods (rebuilt only after they changed)."""
        latest = self._latest_pods
        if latest is not self._last_pods:  # snapshots keep the tuple while pods are unchanged
            self.pods, self._last_pods = pod_directory(latest), latest
        return self.pods

    def start(self) -> None:
        """Bind the group (raises ``nflog.NflogError``/OSError) and start."""
        self.socket = nflog.NflogSocket(self.group)
        for target, name in ((self._read, "nflog-reader"), (self._write, "nflog-writer")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        for thread in self._threads:
            thread.join(2)
        if self.socket is not None:
            self.socket.close()

    def handle(self, packet: nflog.LoggedPacket) -> None:
        """One packet: format it and queue the line (or count it dropped)."""
        if not logtags.is_podwall(packet.prefix):
            self.foreign += 1
            return
        found = line(packet, self.resolve(packet.prefix), node=self.node, pods=self.directory())
        try:
            self._queue.put_nowait(json.dumps(found, separators=(",", ":")))
        except queue.Full:
            self.dropped += 1

    def _read(self) -> None:
        assert self.socket is not None
        while not self._stop.is_set():
            try:
                packets = self.socket.receive()
            except OSError as exc:
                if self._stop.is_set():
                    return
                log.warning("NFLOG group %d: %s", self.group, exc)
                self._stop.wait(1.0)
                continue
            for packet in packets:
                self.handle(packet)

    def _write(self) -> None:
        while True:
            text = self._queue.get()
            if text is None:
                return
            try:
                self.output.write(text + "\n")
                self.output.flush()
                self.lines += 1
            except OSError as exc:
                self.dropped += 1
                log.warning("cannot write the traffic log: %s", exc)


def open_output(path: str) -> IO[str]:
    """``-``: standard output; else the file, appended to, line-buffered."""
    if path == "-":
        return sys.stdout
    return open(path, "a", buffering=1)  # lives as long as the agent
