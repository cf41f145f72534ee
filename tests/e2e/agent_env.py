"""A one-node cluster for agent e2e tests: API double, node netns, CNI chain, agent process.

``Kube(url)``: tiny JSON client of the double (create/replace/delete/patch).
``AgentNode``: a node netns reaching the double through ``cluster_net``, a
conflist (bridge + host-local + podwall, agentTimeoutMs 5000) in its own conf
dir, pods added like a kubelet does (Pod object first, then CNI ADD, then
``status.podIPs``), each serving TCP 80, and the agent run as
``ip netns exec NODE .venv/bin/podwall agent ...``.  Test support only.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from firewall_lab import cluster_net, netns, probe
from firewall_lab.cni_conf import Attachment
from firewall_lab.cni_runner import Runner
from tests.kernel.cni_helpers import make_bin_dir

ROOT = Path(__file__).resolve().parents[2]
PODWALL = str(ROOT / ".venv" / "bin" / "podwall")
#: ``kubectl get nodefirewalls``: the CRD's printer columns, as kubectl prints them
NODEFIREWALL_COLUMNS = [
    "NAME", "BACKEND", "ENDPOINTS", "RULES", "PROGRAMMED", "PROBLEMS", "LAST-SYNC", "WATCH", "AGE",
]  # fmt: skip
PATHS = {
    "Namespace": "/api/v1/namespaces",
    "Pod": "/api/v1/namespaces/{ns}/pods",
    "NetworkPolicy": "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
    "FirewallRule": "/apis/podwall.io/v1alpha1/firewallrules",
    "NodeFirewall": "/apis/podwall.io/v1alpha1/nodefirewalls",
    "CustomResourceDefinition": "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
    "Node": "/api/v1/nodes",
    "ClusterNetworkPolicy": "/apis/policy.networking.k8s.io/v1alpha2/clusternetworkpolicies",
    "AdminNetworkPolicy": "/apis/policy.networking.k8s.io/v1alpha1/adminnetworkpolicies",
    "BaselineAdminNetworkPolicy": (
        "/apis/policy.networking.k8s.io/v1alpha1/baselineadminnetworkpolicies"
    ),
}


def wait_until(check: Callable[[], Any], *, timeout: float = 20, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")
        time.sleep(0.1)


class Kube:
    def __init__(self, url: str) -> None:
        self.url = url

    def call(
        self, method: str, path: str, body: Any = None, ctype: str = "application/json"
    ) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", ctype)
        req.add_header("User-Agent", "podwall-tests")
        try:
            with urllib.request.urlopen(req, timeout=30) as answer:
                return json.loads(answer.read() or b"{}")
        except urllib.error.HTTPError as exc:
            if exc.code == 404 and method in ("GET", "DELETE"):
                return None
            raise AssertionError(f"{method} {path}: {exc.code} {exc.read()[:300]!r}") from exc

    @staticmethod
    def collection(obj: dict[str, Any]) -> str:
        return PATHS[obj["kind"]].format(ns=obj["metadata"].get("namespace", "default"))

    def apply(self, obj: dict[str, Any]) -> Any:
        """Create, or replace keeping the resourceVersion."""
        path = self.collection(obj) + "/" + obj["metadata"]["name"]
        current = self.call("GET", path)
        if current is None:
            return self.call("POST", self.collection(obj), obj)
        obj = json.loads(json.dumps(obj))
        obj["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        if "status" in current and "status" not in obj:
            obj["status"] = current["status"]
        return self.call("PUT", path, obj)

    def delete(self, kind: str, name: str, namespace: str = "default") -> Any:
        return self.call("DELETE", PATHS[kind].format(ns=namespace) + "/" + name)

    def get(self, kind: str, name: str, namespace: str = "default") -> Any:
        return self.call("GET", PATHS[kind].format(ns=namespace) + "/" + name)

    def install_crds(self, *, upstream: bool = False) -> None:
        """podwall's CRDs (and with ``upstream`` the vendored upstream ones)."""
        paths = sorted((ROOT / "crds").glob("*.podwall.io.yaml"))
        if upstream:
            paths += sorted((ROOT / "crds" / "upstream").glob("policy.networking.k8s.io_*.yaml"))
        for path in paths:
            crd = yaml.safe_load(path.read_text())
            if self.get("CustomResourceDefinition", crd["metadata"]["name"]) is None:
                self.call("POST", PATHS["CustomResourceDefinition"], crd)


@dataclass
class Pod:
    namespace: str
    name: str
    netns: str
    attachment: Attachment
    ip: str = ""
    server: probe.Server | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass
class AgentNode:
    kube: Kube
    root: Path
    node: str = "node-1"
    netns: str = ""
    forwarder: cluster_net.Forwarder | None = None
    pods: dict[str, Pod] = field(default_factory=dict)
    agent: subprocess.Popen[bytes] | None = None
    runs: int = 0
    backend: str = "iptables-nft"

    def dir(self, sub: str) -> str:
        path = self.root / sub
        path.mkdir(parents=True, exist_ok=True)
        return str(path)

    def start(self) -> AgentNode:
        sysctls = {"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1"}
        self.netns = netns.create(netns.unique_name("pwagn"), sysctls=sysctls)
        port = int(self.kube.url.rsplit(":", 1)[1])
        self.forwarder = cluster_net.Forwarder(("127.0.0.1", port)).start()
        self.forwarder.expose(self.netns)
        conf = {
            "cniVersion": "1.0.0",
            "name": "podnet",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": "pwbr0",
                    "isGateway": True,
                    "ipMasq": False,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": "10.244.7.0/24"}]],
                        "dataDir": self.dir("ipam"),
                    },
                },
                {
                    "type": "podwall",
                    "backend": self.backend,
                    "podDefault": "deny",
                    "stateDir": self.dir("state"),
                    "runDir": self.dir("run"),
                    "agentTimeoutMs": 5000,
                },
            ],
        }
        self.conflist = conf
        Path(self.dir("conf"), "10-podnet.conflist").write_text(json.dumps(conf))
        self.runner = Runner(
            cni_path=[make_bin_dir(self.dir("bin"))],
            cache_dir=self.dir("cache"),
            exec_netns=self.netns,
        )
        self.kube.install_crds()
        return self

    # --- the agent -----------------------------------------------------------

    def start_agent(self, *extra: str, wait: bool = True) -> None:
        """Run ``podwall agent`` in the node; ``wait``: until its socket exists."""
        self.runs += 1
        log = open(self.root / f"agent-{self.runs}.log", "wb")  # noqa: SIM115 - owned by Popen
        argv = [
            "ip",
            "netns",
            "exec",
            self.netns,
            PODWALL,
            "agent",
            "--node",
            self.node,
            "--kubeconfig",
            str(self.root / "kubeconfig"),
            "--cni-conf-dir",
            self.dir("conf"),
            "--metrics-port",
            "0",
            "--health-port",
            "0",
            "--resync-seconds",
            "30",
            "--debounce-ms",
            "50",
            *extra,
        ]
        from firewall_lab.apiserver import write_kubeconfig

        write_kubeconfig(str(self.root / "kubeconfig"), self.kube.url)
        self.agent = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        if not wait:
            return
        wait_until(
            lambda: os.path.exists(os.path.join(self.dir("run"), "agent.sock")),
            what="agent.sock",
            timeout=30,
        )

    def agent_log(self) -> str:
        return (self.root / f"agent-{self.runs}.log").read_text(errors="replace")

    def stop_agent(self, sig: int = signal.SIGTERM) -> int:
        assert self.agent is not None
        self.agent.send_signal(sig)
        try:
            code = self.agent.wait(20)
        except subprocess.TimeoutExpired:
            self.agent.kill()
            code = self.agent.wait(5)
        self.agent = None
        return code

    def node_status(self) -> dict[str, Any]:
        found = self.kube.get("NodeFirewall", self.node)
        return (found or {}).get("status") or {}

    def synced_after(self, moment: float, *, timeout: float = 20) -> dict[str, Any]:
        """Wait until the agent reported a successful sync after wall time ``moment``."""

        def check() -> dict[str, Any] | None:
            status = self.node_status()
            stamp = status.get("lastSync")
            if not stamp:
                return None
            when = time.mktime(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
            return status if when >= int(moment) and not status.get("lastError") else None

        return wait_until(check, timeout=timeout, what="a sync reported in NodeFirewall")  # type: ignore[no-any-return]

    # --- pods ----------------------------------------------------------------

    def add_pod(self, namespace: str, name: str, labels: dict[str, str] | None = None) -> Pod:
        if self.kube.get("Namespace", namespace) is None:
            self.kube.apply(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
            )
        obj = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
            "spec": {
                "nodeName": self.node,
                "containers": [
                    {"name": "c", "image": "x", "ports": [{"name": "web", "containerPort": 80}]}
                ],
            },
        }
        created = self.kube.apply(obj)
        pod_ns = netns.create(netns.unique_name("pwagp"))
        args = {
            "K8S_POD_NAMESPACE": namespace,
            "K8S_POD_NAME": name,
            "K8S_POD_UID": created["metadata"]["uid"],
        }
        cid = f"cid{len(self.pods)}{pod_ns.replace('-', '')}"
        attachment = Attachment(cid, "eth0", netns.path(pod_ns), args)
        pod = Pod(namespace, name, pod_ns, attachment)
        self.pods[pod.key] = pod
        result = self.runner.add(self.conflist, attachment)
        pod.ip = result["ips"][0]["address"].split("/")[0]
        status = {"phase": "Running", "podIP": pod.ip, "podIPs": [{"ip": pod.ip}]}
        path = PATHS["Pod"].format(ns=namespace) + f"/{name}/status"
        self.kube.call("PATCH", path, {"status": status}, "application/merge-patch+json")
        pod.server = probe.serve(pod_ns, tcp=(80,))
        return pod

    def delete_pod(self, pod: Pod, *, api: bool = True, cni: bool = True) -> None:
        if cni:
            self.runner.delete(self.conflist, pod.attachment)
        if api:
            self.kube.delete("Pod", pod.name, pod.namespace)
        if pod.server is not None:
            pod.server.stop()
        netns.delete(pod.netns)
        self.pods.pop(pod.key, None)

    def reach(self, src: Pod, dst: Pod, port: int = 80) -> bool:
        return probe.probe(src.netns, dst.ip, port, timeout=0.3, retries=1)

    def run(self, *argv: str) -> str:
        return netns.run(self.netns, list(argv), check=False).stdout

    def podwall_rules(self) -> list[str]:
        return [
            line for line in self.run("iptables-nft-save").splitlines() if "podwall" in line.lower()
        ]

    def stop(self) -> None:
        if self.agent is not None:
            self.stop_agent()
        for pod in list(self.pods.values()):
            if pod.server is not None:
                pod.server.stop()
            netns.delete(pod.netns)
        if self.forwarder is not None:
            self.forwarder.stop()
        if self.netns:
            netns.delete(self.netns)


def python() -> str:
    return sys.executable


RECORDED = ROOT / "tests" / "e2e" / "recorded_agent_calls.json"
#: what agents run with --upstream-policy call (checked against the base
#: ClusterRole plus deploy/components/upstream-policy-rbac)
RECORDED_UPSTREAM = ROOT / "tests" / "e2e" / "recorded_agent_calls_upstream.json"
_recorded: dict[Path, list[Mapping[str, str]]] = {}


def record_agent_calls(
    requests: list[dict[str, str]], *, source: str, path: Path = RECORDED
) -> None:
    """Merge the agent's requests (kopf's and its own: User-Agent with "kopf")
    into ``path`` (default ``recorded_agent_calls.json``; tests/rbac_audit
    format): the union with what the file already holds, so running one agent
    test module keeps the calls the others recorded.  Delete the file to
    record from scratch."""
    from tests import rbac_audit

    recorded = _recorded.setdefault(path, [])
    if not recorded and path.exists():
        recorded.extend(rbac_audit.load_recorded(str(path)))
    recorded.extend(r for r in requests if "kopf" in r.get("user_agent", ""))
    rbac_audit.save_recorded(str(path), recorded, source=source)


def deny_all(namespace: str, name: str = "deny-all") -> dict[str, object]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    }
