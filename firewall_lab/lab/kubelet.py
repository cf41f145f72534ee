"""The lab kubelet: every Pod object becomes a network namespace behind the
node's CNI chain, serving the ports its containers declare.

It hears the API double's storage events in-process (the lab process owns
the server).  A pod without ``spec.nodeName`` is scheduled on the node with
the fewest pods (ties: the first node).  A scheduled pod gets a namespace,
an ADD through the node's primary conflist by the conflist runner (CNI_ARGS
as containerd sends them), a probe server for every ``containers[].ports``
entry (TCP, UDP; SCTP answered on raw sockets) and ``status`` (phase,
``podIP(s)``, ``hostIP``).  A deleted pod gets DEL and its namespace removed.
A ``hostNetwork`` pod gets neither namespace nor CNI: it serves its ports in
the node's namespace and its IPs are the node's (``nodes`` peers and the
upstream conformance cases need such pods).
Label changes need nothing here: the agents hear them from the API.

Work on one pod is serialised; different pods proceed in parallel.  What
runs where is published in ``DIR/pods.json`` for the probing CLI.
"""

from __future__ import annotations

import concurrent.futures
import copy
import functools
import json
import logging
import os
import threading
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from firewall_lab import netns, probe
from firewall_lab.apiserver.storage import Event
from firewall_lab.cni_conf import Attachment, result_ips
from firewall_lab.cni_errors import CniRunnerError
from firewall_lab.cni_runner import Runner
from firewall_lab.lab import topology
from firewall_lab.lab.apiserve import LabApiServer
from firewall_lab.lab.layout import Layout, Node
from firewall_lab.lab.state import Recorder

log = logging.getLogger(__name__)
POD_KEY = "/pods"
Json = dict[str, Any]


@dataclass
class RunningPod:
    """A pod the kubelet runs: where, and what CNI gave it."""

    uid: str
    namespace: str
    name: str
    node: str
    netns: str
    container_id: str
    ips: list[str]
    host_network: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def declared_ports(pod: Json) -> dict[str, list[int]]:
    """``{"TCP": [...], "UDP": [...], "SCTP": [...]}`` from the containers."""
    found: dict[str, list[int]] = {"TCP": [], "UDP": [], "SCTP": []}
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            protocol = str(port.get("protocol") or "TCP").upper()
            number = port.get("containerPort")
            if protocol in found and isinstance(number, int) and number not in found[protocol]:
                found[protocol].append(number)
    return found


class Kubelet:
    """Runs the pods of every node of one lab."""

    def __init__(self, layout: Layout, server: LabApiServer, recorder: Recorder) -> None:
        self.layout = layout
        self.server = server
        self.recorder = recorder
        self.pods: dict[str, RunningPod] = {}
        self.servers: dict[str, probe.Server] = {}
        self.runners = {
            node.name: Runner(
                cni_path=[layout.node_dir(node, "bin")],
                cache_dir=layout.node_dir(node, "cache"),
                exec_netns=node.netns,
                timeout=60,
            )
            for node in layout.node_list()
        }
        self._locks: dict[str, threading.Lock] = {}
        self._mutex = threading.Lock()
        self._numbers = iter(range(1, 1 << 30))
        self._pool = concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="kubelet")
        self._choices: dict[str, str] = {}  # pod uid → node, until bound
        self.failed: set[str] = set()

    # ---------------------------------------------------------------- events

    def start(self) -> None:
        """Listen to pod events and start every pod already stored."""
        store = self.server.state.api.store

        def subscribe() -> list[Json]:
            store.listeners.add(self._hear)
            return [copy.deepcopy(pod) for pod in store.items(POD_KEY)]

        for pod in self.server.call(subscribe):
            if (pod.get("spec") or {}).get("nodeName"):
                self._dispatch("ADDED", pod)
            else:
                self.server.call(functools.partial(self._bind_least_loaded, pod))

    def _hear(self, event: Event) -> None:
        """Called on the server's loop thread: schedule, hand off, never block."""
        if event.key != POD_KEY:
            return
        obj = copy.deepcopy(event.obj)
        uid = obj["metadata"]["uid"]
        if event.type == "DELETED":
            self._choices.pop(uid, None)
        elif not (obj.get("spec") or {}).get("nodeName"):
            if uid not in self._choices:
                self._choices[uid] = self._least_loaded()
                assert self.server.loop is not None
                self.server.loop.call_soon(self._bind, obj, self._choices[uid])
            return
        self._pool.submit(self._guarded, self._dispatch, event.type, obj)

    def _guarded(self, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("kubelet: %s failed", getattr(fn, "__name__", fn))

    def _dispatch(self, kind: str, pod: Json) -> None:
        uid = pod["metadata"]["uid"]
        if kind == "DELETED":
            with self._lock_of(uid):
                self._stop(uid)
            return
        node_name = (pod.get("spec") or {}).get("nodeName")
        with self._lock_of(uid):
            if uid not in self.pods and node_name in self.runners:
                self._start_pod(pod, self.layout.node(node_name))

    def _lock_of(self, uid: str) -> threading.Lock:
        with self._mutex:
            return self._locks.setdefault(uid, threading.Lock())

    # ------------------------------------------------------------ scheduling

    def _least_loaded(self) -> str:
        """The node with the fewest pods (bound or being bound); on the loop thread."""
        load = {node.name: 0 for node in self.layout.node_list()}
        for pod in self.server.state.api.store.items(POD_KEY):
            node = (pod.get("spec") or {}).get("nodeName")
            if node in load:
                load[node] += 1
        for node in self._choices.values():
            load[node] += 1
        return min(load, key=lambda name: (load[name], name))

    def _bind_least_loaded(self, pod: Json) -> None:
        self._bind(pod, self._least_loaded())

    def _bind(self, pod: Json, node: str) -> None:
        """Set ``spec.nodeName`` (what the scheduler's binding does); loop thread."""
        meta = pod["metadata"]
        api = self.server.state.api
        stored = api.store.get(POD_KEY, meta["namespace"], meta["name"])
        self._choices.pop(meta["uid"], None)
        if stored is None or stored["metadata"]["uid"] != meta["uid"]:
            return
        if (stored.get("spec") or {}).get("nodeName"):
            return
        rtype = api.registry.lookup("", "v1", "pods")
        assert rtype is not None
        body = copy.deepcopy(stored)
        body.setdefault("spec", {})["nodeName"] = node
        api.update(rtype, meta["namespace"], meta["name"], body)

    # ------------------------------------------------------------ pod work

    def _start_pod(self, pod: Json, node: Node) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        if uid in self.failed:
            return
        with self._mutex:
            number = next(self._numbers)
        host_network = bool((pod.get("spec") or {}).get("hostNetwork"))
        running = RunningPod(
            uid=uid,
            namespace=meta["namespace"],
            name=meta["name"],
            node=node.name,
            netns=node.netns if host_network else self.layout.pod_netns(number),
            container_id=uuid.uuid4().hex + uuid.uuid4().hex,
            ips=[],
            host_network=host_network,
        )
        try:
            self._attach(running, pod)
        except Exception as exc:
            self.failed.add(uid)
            log.error("pod %s on %s failed to start: %s", running.key, node.name, exc)
            self._teardown(running)
            self._write_status(running, {"phase": "Failed", "message": str(exc)[:1000]})
            return
        with self._mutex:
            self.pods[uid] = running
        self._publish()
        status = {
            "phase": "Running",
            "hostIP": node.ip4,
            "podIP": running.ips[0] if running.ips else "",
            "podIPs": [{"ip": ip} for ip in running.ips],
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {"name": c.get("name", f"c{i}"), "ready": True, "restartCount": 0}
                for i, c in enumerate((pod.get("spec") or {}).get("containers") or [])
            ],
        }
        self._write_status(running, status)

    def _attach(self, running: RunningPod, pod: Json) -> None:
        """Namespace, CNI ADD, probe server (hostNetwork: the server only)."""
        node = self.layout.node(running.node)
        if running.host_network:
            running.ips = [node.ip4] + ([node.ip6] if self.layout.ipv6 else [])
        else:
            netns.create(self.recorder.netns(running.netns), sysctls=topology.NO_DAD)
            result = self.runners[running.node].add(
                topology.conflist_path(self.layout, node), self._attachment(running)
            )
            running.ips = result_ips(result)
        ports = declared_ports(pod)
        if any(ports.values()):
            self.servers[running.uid] = probe.serve(
                running.netns, tcp=ports["TCP"], udp=ports["UDP"], sctp=ports["SCTP"]
            )

    def _attachment(self, running: RunningPod) -> Attachment:
        return Attachment(
            container_id=running.container_id,
            ifname="eth0",
            netns=netns.path(running.netns),
            args={
                "K8S_POD_NAMESPACE": running.namespace,
                "K8S_POD_NAME": running.name,
                "K8S_POD_INFRA_CONTAINER_ID": running.container_id,
                "K8S_POD_UID": running.uid,
            },
        )

    def _stop(self, uid: str) -> None:
        self.failed.discard(uid)
        with self._mutex:
            running = self.pods.pop(uid, None)
        if running is None:
            return
        self._teardown(running)
        self._publish()

    def _teardown(self, running: RunningPod) -> None:
        """Stop the server, CNI DEL, remove the namespace; never raises."""
        server = self.servers.pop(running.uid, None)
        if server is not None:
            server.stop()
        if running.host_network:
            return
        node = self.layout.node(running.node)
        try:
            network = topology.conflist_path(self.layout, node)
            self.runners[running.node].delete(network, self._attachment(running))
        except (CniRunnerError, OSError) as exc:
            log.error("DEL of %s on %s failed: %s", running.key, running.node, exc)
        netns.delete(running.netns)
        self.recorder.forget_netns(running.netns)

    def stop_all(self) -> None:
        """DEL every pod (lab shutdown)."""
        self.server.call(lambda: self.server.state.api.store.listeners.discard(self._hear))
        self._pool.shutdown(wait=True, cancel_futures=True)
        for uid in list(self.pods):
            self._stop(uid)

    def _write_status(self, running: RunningPod, status: Json) -> None:
        def write() -> None:
            api = self.server.state.api
            stored = api.store.get(POD_KEY, running.namespace, running.name)
            if stored is None or stored["metadata"]["uid"] != running.uid:
                return
            rtype = api.registry.lookup("", "v1", "pods")
            assert rtype is not None
            body = copy.deepcopy(stored)
            body["status"] = {**(body.get("status") or {}), **status}
            api.update(rtype, running.namespace, running.name, body, subresource="status")

        self.server.call(write)

    def _publish(self) -> None:
        """``DIR/pods.json``: every running pod with node, namespace and IPs."""
        with self._mutex:
            data = {"pods": {pod.key: asdict(pod) for pod in self.pods.values()}}
        path = self.layout.pods_file
        tmp = f"{path}.{threading.get_ident()}.tmp"
        with open(tmp, "w") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
        os.replace(tmp, path)
