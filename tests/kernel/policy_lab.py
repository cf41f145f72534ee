"""A one-node policy lab for kernel-vs-model tests.

``PolicyLab.start(workdir)`` makes a node namespace and, through the real CNI
chain (``bridge`` + ``host-local``, then ``podwall`` run as ``python -m
firewall_plugin``), pods x/a … z/c with dual-stack addresses, each serving
TCP 80-82, UDP 53 and 81, SCTP 7777.  ``program(docs)`` builds a snapshot from
the given policies plus the lab's pods, compiles it for the node's endpoint
records and applies it with the applier; ``kernel_matrix`` probes every pod
pair; ``model_matrix`` asks the evaluator.  ``stop()`` deletes everything.

Test support only: never used by the product.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from firewall_lab import netns, probe
from firewall_lab.cni_conf import Attachment
from firewall_lab.cni_runner import Runner
from firewall_operator import applier, cluster, compiler, evaluate
from firewall_plugin import endpoints, model
from firewall_plugin.backends import get_backend
from tests.kernel.inside import entered

NODE = "node-1"
NAMESPACES = ("x", "y", "z")
PODS = ("a", "b", "c")
TCP_PORTS = (80, 81, 82)
UDP_PORTS = (53, 81)
SCTP_PORTS = (7777,)
SUBNET4, SUBNET6 = "10.244.1.0/24", "fd00:244:1::/64"
REFERENCE_PLUGINS = ("bridge", "host-local", "loopback")


def pod_ports(name: str) -> list[dict[str, Any]]:
    web = 80 if name == "a" else 81
    return [
        {"name": "web", "containerPort": web, "protocol": "TCP"},
        {"name": "alt", "containerPort": 82, "protocol": "TCP"},
        {"name": "dns", "containerPort": 53, "protocol": "UDP"},
        {"name": "assoc", "containerPort": 7777, "protocol": "SCTP"},
    ]


def conflist(workdir: str, backend: str) -> dict[str, Any]:
    ranges = [[{"subnet": SUBNET4}], [{"subnet": SUBNET6}]]
    return {
        "cniVersion": "1.0.0",
        "name": "pwlab",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "pwbr0",
                "isGateway": True,
                "ipMasq": False,
                "ipam": {
                    "type": "host-local",
                    "ranges": ranges,
                    "dataDir": os.path.join(workdir, "ipam"),
                },
            },
            {
                "type": "podwall",
                "backend": backend,
                "podDefault": "deny",
                "stateDir": os.path.join(workdir, "state"),
                "runDir": os.path.join(workdir, "run"),
                "agentTimeoutMs": 0,
            },
        ],
    }


def make_bin_dir(workdir: str) -> str:
    """Reference plugins (symlinked) plus a ``podwall`` launcher."""
    bin_dir = os.path.join(workdir, "bin")
    os.makedirs(bin_dir, exist_ok=True)
    for plugin in REFERENCE_PLUGINS:
        os.symlink(os.path.join("/usr/lib/cni", plugin), os.path.join(bin_dir, plugin))
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    launcher = os.path.join(bin_dir, "podwall")
    with open(launcher, "w") as handle:
        handle.write(f'#!/bin/sh\ncd {root} && exec {sys.executable} -m firewall_plugin "$@"\n')
    os.chmod(launcher, 0o755)
    return bin_dir


@dataclass
class LabPod:
    namespace: str
    name: str
    netns: str
    ips: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def ip(self, family: model.Family) -> str:
        return next(ip for ip in self.ips if model.family_of(ip) == family)


@dataclass
class PolicyLab:
    workdir: str
    backend_name: str = "iptables-nft"
    node: str = ""
    pods: dict[str, LabPod] = field(default_factory=dict)
    servers: list[probe.Server] = field(default_factory=list)
    applier: applier.Applier | None = None

    @property
    def state_dir(self) -> str:
        return os.path.join(self.workdir, "state")

    def start(self) -> PolicyLab:
        sysctls = {
            "net.ipv4.ip_forward": "1",
            "net.ipv6.conf.all.forwarding": "1",
            "net.ipv6.conf.all.accept_dad": "0",
            "net.ipv6.conf.default.accept_dad": "0",
        }
        self.node = netns.create(netns.unique_name("pwmxn"), sysctls=sysctls)
        runner = Runner(
            cni_path=[make_bin_dir(self.workdir)],
            cache_dir=os.path.join(self.workdir, "cache"),
            exec_netns=self.node,
        )
        network = conflist(self.workdir, self.backend_name)
        for namespace in NAMESPACES:
            for name in PODS:
                self._add_pod(runner, network, namespace, name)
        with entered(self.node):
            self.applier = applier.Applier(
                get_backend(self.backend_name),
                run_dir=os.path.join(self.workdir, "run"),
                state_dir=self.state_dir,
            )
        return self

    def _add_pod(self, runner: Runner, network: Mapping[str, Any], ns: str, name: str) -> None:
        pod_ns = netns.create(
            netns.unique_name(f"pwmx{ns}{name}"),
            sysctls={"net.ipv6.conf.all.accept_dad": "0", "net.ipv6.conf.default.accept_dad": "0"},
        )
        pod = LabPod(ns, name, pod_ns)
        self.pods[pod.key] = pod
        args = {"K8S_POD_NAMESPACE": ns, "K8S_POD_NAME": name, "K8S_POD_UID": f"uid-{ns}-{name}"}
        attachment = Attachment(f"cid-{ns}-{name}", "eth0", netns.path(pod_ns), args)
        result = runner.add(network, attachment)
        pod.ips = tuple(entry["address"].split("/")[0] for entry in result.get("ips", []))
        self.servers.append(probe.serve(pod_ns, tcp=TCP_PORTS, udp=UDP_PORTS, sctp=SCTP_PORTS))

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        for pod in self.pods.values():
            netns.delete(pod.netns)
        if self.node:
            netns.delete(self.node)

    def documents(
        self,
        *,
        namespace_labels: Mapping[str, Mapping[str, str]] | None = None,
        pod_labels: Mapping[str, Mapping[str, str]] | None = None,
    ) -> list[dict[str, Any]]:
        """Namespace and Pod objects of the lab (labels ``ns: x``, ``pod: a``
        plus the given extra labels)."""
        docs: list[dict[str, Any]] = []
        for ns in NAMESPACES:
            labels = {"ns": ns, **(namespace_labels or {}).get(ns, {})}
            docs.append({"kind": "Namespace", "metadata": {"name": ns, "labels": labels}})
        for pod in self.pods.values():
            labels = {"pod": pod.name, **(pod_labels or {}).get(pod.key, {})}
            meta = {"namespace": pod.namespace, "name": pod.name, "labels": labels}
            meta["uid"] = f"uid-{pod.namespace}-{pod.name}"
            docs.append(
                {
                    "kind": "Pod",
                    "metadata": meta,
                    "spec": {"nodeName": NODE, "containers": [{"ports": pod_ports(pod.name)}]},
                    "status": {"phase": "Running", "podIPs": [{"ip": ip} for ip in pod.ips]},
                }
            )
        return docs

    def program(self, docs: Iterable[Mapping[str, Any]]) -> compiler.CompiledNode:
        """Compile ``docs`` for this node and apply the result."""
        snapshot = cluster.Snapshot.from_documents(docs)
        records = list(endpoints.read_all(self.state_dir))
        compiled = compiler.compile_node(snapshot, records)
        assert self.applier is not None
        with entered(self.node):
            self.applier.apply(compiled.families, endpoints=compiled.endpoints)
            subprocess.run(["conntrack", "-F"], capture_output=True, check=False)
        for pod in self.pods.values():  # cold neighbour caches, as for new pods
            netns.run(pod.netns, ["ip", "neigh", "flush", "all"], check=False)
        return compiled

    def kernel_matrix(
        self, *, port: int, protocol: probe.Protocol, family: model.Family
    ) -> dict[str, dict[str, bool]]:
        pods = {key: (pod.netns, pod.ip(family)) for key, pod in self.pods.items()}
        return probe.matrix(pods, port=port, protocol=protocol)


def model_matrix(
    docs: Iterable[Mapping[str, Any]], *, port: int, protocol: str, family: model.Family
) -> dict[str, dict[str, bool]]:
    """The evaluator's answer without the self pairs (probes skip those)."""
    snapshot = cluster.Snapshot.from_documents(docs)
    found = evaluate.matrix(snapshot, port=port, protocol=protocol, family=family)
    reachable: Any = found["reachable"]
    return {
        src: {dst: ok for dst, ok in row.items() if dst != src} for src, row in reachable.items()
    }


def differences(
    kernel: Mapping[str, Mapping[str, bool]], expected: Mapping[str, Mapping[str, bool]]
) -> list[str]:
    """``src -> dst: kernel X, model Y`` for each disagreeing pair."""
    return [
        f"{src} -> {dst}: kernel {'open' if ok else 'blocked'}, model "
        f"{'open' if expected[src][dst] else 'blocked'}"
        for src, row in sorted(kernel.items())
        for dst, ok in sorted(row.items())
        if expected[src][dst] != ok
    ]


def render_table(found: Mapping[str, Mapping[str, bool]]) -> str:
    keys = sorted(found)
    lines = ["      " + " ".join(k.replace("/", "")[:3].rjust(3) for k in keys)]
    for src in keys:
        cells = [" . " if src == dst else (" + " if found[src][dst] else " X ") for dst in keys]
        lines.append(f"{src:5} " + " ".join(cells))
    return "\n".join(lines)
