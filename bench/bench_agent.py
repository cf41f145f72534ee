"""Benchmark: the agent against a big cluster served by the API server double.

The double runs as its own process, loaded from a generated state file that
it never writes back: ``--pods`` pods (default 100,000) in ``--namespaces``
namespaces, ``--policies`` NetworkPolicies (default 1,000), ``--local`` of the
pods on the agent's node (endpoint records written as the plugin would).  The
agent runs as a real process inside a node netns (``ip netns exec``), reaching
the double through ``firewall_lab.cluster_net``.

Prints: time from agent start to its first full sync (NodeFirewall shows every
local endpoint) and the agent's RSS then; the LISTs per kind the agent made
(from the double's request log); then, in two phases, the time from the API's
answer to a change until the kernel shows it (p50/p99/max; a poller inside the
node netns runs ``nft`` (``--backend nftables``, the default) or
``iptables-nft-save`` / ``ipset test`` (``--backend iptables-nft``)), for policy changes
(one policy's port) and label changes (a remote pod joining a peer set):
*start-up* right after the first sync, and *churn* while ``--churn-rate``
remote pod changes per second go on and every watch is made to expire at once
(410 Gone: the agent re-lists all 100k pods meanwhile).  The double's own
latency (the PUT round trip) is taken out.  Last, the agent's peak RSS and CPU.
Targets (issue 15): first sync < 30 s, RSS < 200 MiB, p99 < 1 s.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from bench.agent_load import Churn, Poller, cpu_seconds, listings, percentiles, request
from firewall_lab import cluster_net, netns
from firewall_lab.apiserver import spawn, write_kubeconfig
from firewall_plugin import endpoints

ROOT = Path(__file__).resolve().parents[1]
NODE = "bench-node"
PEER_PORT = 7777
POLICY = "/apis/networking.k8s.io/v1/namespaces/ns-0/networkpolicies/np-0"


def meta(name: str, rv: int, ns: str | None = None, **extra: Any) -> dict[str, Any]:
    found: dict[str, Any] = {
        "name": name,
        "uid": str(uuid.uuid4()),
        "resourceVersion": str(rv),
        "creationTimestamp": "2024-01-01T00:00:00Z",
        **extra,
    }
    if ns is not None:
        found["namespace"] = ns
    return found


def pod_ip(n: int) -> str:
    return f"10.{64 + n // 65536}.{(n // 256) % 256}.{n % 256}"


def policy(i: int, ns: str, rv: int, port: int) -> dict[str, Any]:
    peer = {
        "namespaceSelector": {"matchLabels": {"team": f"t{i % 10}"}},
        "podSelector": {"matchLabels": {"app": f"app{i % 50}"}},
    }
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta(f"np-{i}", rv, ns, generation=1),
        "spec": {
            "podSelector": {"matchLabels": {"app": f"app{i % 50}"}},
            "ingress": [{"from": [peer], "ports": [{"port": port, "protocol": "TCP"}]}],
        },
    }


def peers_policy(rv: int) -> dict[str, Any]:
    """Lets pods labelled ``bench-peer: "yes"`` (any namespace) reach app0 pods
    of ns-0 (pod-0 is one, on the bench node) on PEER_PORT: a label change on a
    remote pod shows as its IP in this peer's ipset."""
    peer = {"namespaceSelector": {}, "podSelector": {"matchLabels": {"bench-peer": "yes"}}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta("bench-peers", rv, "ns-0", generation=1),
        "spec": {
            "podSelector": {"matchLabels": {"app": "app0"}},
            "ingress": [{"from": [peer], "ports": [{"port": PEER_PORT, "protocol": "TCP"}]}],
        },
    }


def build_state(args: argparse.Namespace) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    rv = 1
    namespaces, pods, policies, local = [], [], [], []
    for i in range(args.namespaces):
        rv += 1
        namespaces.append(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": meta(
                    f"ns-{i}",
                    rv,
                    labels={"team": f"t{i % 10}", "kubernetes.io/metadata.name": f"ns-{i}"},
                ),
            }
        )
    for n in range(args.pods):
        rv += 1
        ns = f"ns-{n % args.namespaces}"
        node = NODE if n < args.local else f"node-{n % 500}"
        obj = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": meta(
                f"pod-{n}",
                rv,
                ns,
                labels={"app": f"app{n % 50}", "pod-template-hash": f"h{n % 997}"},
            ),
            "spec": {
                "nodeName": node,
                "containers": [
                    {"name": "c", "image": "x", "ports": [{"name": "web", "containerPort": 8080}]}
                ],
            },
            "status": {"phase": "Running", "podIP": pod_ip(n), "podIPs": [{"ip": pod_ip(n)}]},
        }
        pods.append(obj)
        if n < args.local:
            local.append(obj)
    for i in range(args.policies):
        rv += 1
        policies.append(policy(i, f"ns-{i % args.namespaces}", rv, 1000 + i % 100))
    rv += 1
    policies.append(peers_policy(rv))
    state = {
        "resourceVersion": rv,
        "objects": {
            "/namespaces": namespaces,
            "/pods": pods,
            "networking.k8s.io/networkpolicies": policies,
        },
    }
    return state, local


def rss(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def node_status(url: str) -> dict[str, Any]:
    try:
        return (
            request(url, "GET", f"/apis/podwall.io/v1alpha1/nodefirewalls/{NODE}").get("status")
            or {}
        )
    except OSError:
        return {}


def write_records(state_dir: str, local: list[dict[str, Any]]) -> None:
    for n, obj in enumerate(local):
        record = endpoints.EndpointRecord.make(
            container_id=f"bench{n:05d}",
            ifname="eth0",
            podNamespace=obj["metadata"]["namespace"],
            podName=obj["metadata"]["name"],
            podUID=obj["metadata"]["uid"],
            ips=(obj["status"]["podIP"] + "/32",),  # records hold interface addresses
        )
        endpoints.write(state_dir, record)


def first_sync(
    url: str, proc: subprocess.Popen[bytes], start: float, local: int, limit: float
) -> float:
    while time.monotonic() - start < limit:
        if proc.poll() is not None:
            raise RuntimeError("the agent exited")
        status = node_status(url)
        if status.get("endpoints") == local and status.get("lastSync"):
            return time.monotonic() - start
        time.sleep(0.25)
    raise RuntimeError(f"no full sync within {limit}s")


def label_peer(url: str, pod: dict[str, Any], value: str) -> float:
    """Set a pod's ``bench-peer`` label; returns the PUT's round trip."""
    meta_ = pod["metadata"]
    path = f"/api/v1/namespaces/{meta_['namespace']}/pods/{meta_['name']}"
    body = {"metadata": {"labels": {"bench-peer": value}}}
    moment = time.time()
    request(url, "PATCH", path, body, "application/merge-patch+json")
    return time.time() - moment


class Kernel:
    """How the bench reads the node's kernel, per backend: the rules (a policy's
    port shows) and the peer set of the bench-peers policy (a pod's IP shows)."""

    def __init__(self, backend: str, node_ns: str) -> None:
        self.backend, self.node_ns = backend, node_ns

    def rules(self, port: int) -> tuple[list[str], str]:
        """A command and the text its output holds once ``port`` is in a rule."""
        if self.backend == "nftables":
            return ["nft", "-t", "list", "table", "inet", "podwall"], f"dport {port} "
        return ["iptables-nft-save", "-t", "filter"], f"--dport {port} "

    def member(self, name: str, ip: str) -> list[str]:
        """A command that succeeds once ``ip`` is in set ``name``."""
        if self.backend == "nftables":
            return ["nft", "get", "element", "inet", "podwall", name, "{ " + ip + " }"]
        return ["ipset", "test", name, ip]

    def peer_set(self, ip: str) -> str:
        """The set that holds exactly ``ip`` (the bench-peers policy's peer)."""
        if self.backend == "nftables":
            out = netns.run(self.node_ns, ["nft", "list", "table", "inet", "podwall"]).stdout
            members = _nft_sets(out)
        else:
            members = {}
            for line in netns.run(self.node_ns, ["ipset", "save"], check=False).stdout.splitlines():
                parts = line.split()
                if parts and parts[0] == "add":
                    members.setdefault(parts[1], []).append(parts[2])
        found = [name for name, ips in members.items() if ips == [ip]]
        if len(found) != 1:
            raise RuntimeError(f"no single set holds only {ip}: {found}")
        return found[0]


def _nft_sets(listing: str) -> dict[str, list[str]]:
    """Set name → elements, from ``nft list table`` text (elements may span lines)."""
    found: dict[str, list[str]] = {}
    for match in re.finditer(r"\n\s*set (\S+) \{(.*?)\n\s*\}", listing, re.S):
        elements = re.search(r"elements = \{(.*?)\}", match.group(2), re.S)
        items = elements.group(1).replace("\n", " ").split(",") if elements else []
        found[match.group(1)] = [item.strip() for item in items if item.strip()]
    return found


class Changes:
    """Policy and label changes, each timed from the API's answer to the kernel."""

    def __init__(self, url: str, kernel: Kernel, peers: list[dict[str, Any]]) -> None:
        self.url, self.kernel, self.peers = url, kernel, peers
        self.poller = Poller(kernel.node_ns)
        self.port = 20000
        label_peer(url, peers[0], "yes")
        self.poller.expect(*kernel.rules(PEER_PORT))
        self.poller.seen()
        ip = peers[0]["status"]["podIP"]
        wait_for(lambda: _try(kernel.peer_set, ip), 60, "the peer set")
        self.set_name = kernel.peer_set(ip)
        self.next_peer = 1

    def policy(self) -> tuple[float, float]:
        """(answer → kernel, PUT round trip) of one change of np-0's port."""
        current = request(self.url, "GET", POLICY)
        self.port += 1
        current["spec"]["ingress"][0]["ports"][0]["port"] = self.port
        self.poller.expect(*self.kernel.rules(self.port))
        moment = time.time()
        request(self.url, "PUT", POLICY, current)
        answered = time.time()
        return self.poller.seen() - answered, answered - moment

    def run(self, count: int) -> dict[str, list[float]]:
        found: dict[str, list[float]] = {"policy": [], "label": [], "api": []}
        for _ in range(count):
            for what, change in (("policy", self.policy), ("label", self.label)):
                kernel, api = change()
                found[what].append(kernel)
                found["api"].append(api)
        return found

    def label(self) -> tuple[float, float]:
        """(answer → kernel, PATCH round trip) of one remote pod joining the peer set."""
        pod = self.peers[self.next_peer % len(self.peers)]
        self.next_peer += 1
        self.poller.expect(self.kernel.member(self.set_name, pod["status"]["podIP"]))
        moment = time.time()
        took = label_peer(self.url, pod, "yes")
        return self.poller.seen() - (moment + took), took

    def close(self) -> None:
        self.poller.close()


def _try(func: Any, *args: Any) -> bool:
    try:
        func(*args)
        return True
    except RuntimeError:
        return False


def wait_for(check: Any, limit: float, what: str) -> None:
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {limit}s")
        time.sleep(0.2)


def report(phase: str, found: dict[str, list[float]]) -> None:
    for what in ("policy", "label"):
        numbers = percentiles(found[what])
        print(f"{phase}: {what} change → kernel (from the API's answer): {numbers}")
    print(f"{phase}: the API double's own round trip: {percentiles(found['api'])}")


def start_agent(work: Path, node_ns: str, kubeconfig: str, backend: str) -> subprocess.Popen[bytes]:
    log = open(work / "agent.log", "wb")  # noqa: SIM115 - closed with the process
    argv = [
        "ip", "netns", "exec", node_ns, str(ROOT / ".venv" / "bin" / "podwall"), "agent",
        "--node", NODE, "--kubeconfig", kubeconfig, "--cni-conf-dir", str(work / "conf"),
        "--backend", backend, "--state-dir", str(work / "state"),
        "--run-dir", str(work / "run"), "--metrics-port", "0", "--health-port", "0",
        "--debounce-ms", "50",
    ]  # fmt: skip
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_agent")
    parser.add_argument("--pods", type=int, default=100_000)
    parser.add_argument("--policies", type=int, default=1_000)
    parser.add_argument("--namespaces", type=int, default=100)
    parser.add_argument("--local", type=int, default=20)
    parser.add_argument("--changes", type=int, default=100, help="per kind and phase")
    parser.add_argument("--churn-rate", type=float, default=50.0, help="pod changes per second")
    parser.add_argument("--limit", type=float, default=1800.0)
    parser.add_argument(
        "--backend", default="nftables", choices=("nftables", "iptables-nft"), help="the agent's"
    )
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="pwbench-agent-"))
    state, local = build_state(args)
    (work / "state.json").write_text(json.dumps(state))
    remote = state["objects"]["/pods"][args.local :]
    del state
    extra = ["--history-size", "500000", "--no-save"]
    server, url = spawn(state_file=str(work / "state.json"), extra=extra)
    node_ns = netns.create(netns.unique_name("pwbna"))
    forwarder = cluster_net.Forwarder(("127.0.0.1", int(url.rsplit(":", 1)[1]))).start()
    agent, changes, churn = None, None, None
    try:
        forwarder.expose(node_ns)
        for crd in sorted((ROOT / "crds").glob("*.podwall.io.yaml")):
            body = yaml.safe_load(crd.read_text())
            request(url, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", body)
        write_records(str(work / "state"), local)
        kubeconfig = write_kubeconfig(str(work / "kubeconfig"), url)
        start = time.monotonic()
        agent = start_agent(work, node_ns, kubeconfig, args.backend)
        seconds = first_sync(url, agent, start, args.local, args.limit)
        at_sync = rss(agent.pid)
        print(
            f"cluster: {args.pods} pods, {args.policies + 1} policies, "
            f"{args.namespaces} namespaces, {args.local} local endpoints, {args.backend}"
        )
        print(f"first full sync: {seconds:.1f} s (target < 30 s); RSS then {at_sync[0]:.0f} MiB")
        changes = Changes(url, Kernel(args.backend, node_ns), remote[1000:])
        cpu = cpu_seconds(agent.pid)
        report("start-up", changes.run(args.changes))
        print(f"agent CPU in the start-up phase: {cpu_seconds(agent.pid) - cpu:.1f} s")
        churn = Churn(url, remote[1000 + 4 * args.changes :], rate=args.churn_rate)
        churn.start()
        time.sleep(2)
        request(url, "POST", "/_podwall/expire-watches")  # 410: every kind is listed again
        began, cpu = time.monotonic(), cpu_seconds(agent.pid)
        found = changes.run(args.changes)
        churned = time.monotonic() - began
        churn.stop()
        report(f"churn ({churn.changes / churned:.0f} pod changes/s, re-list of every kind)", found)
        used = cpu_seconds(agent.pid) - cpu
        print(f"agent CPU in the churn phase: {used:.1f} s in {churned:.0f} s")
        kinds = {path.rsplit("/", 1)[1]: n for path, n in listings(url).items()}
        print(f"LISTs per kind (start-up + the forced re-list): {kinds}")
        current, peak = rss(agent.pid)
        print(f"agent RSS now {current:.0f} MiB, peak {peak:.0f} MiB (target < 200 MiB)")
        print(f"agent log: {work / 'agent.log'}")
        return 0
    finally:
        for running in (churn, changes):
            if running is not None:
                running.stop() if isinstance(running, Churn) else running.close()
        if agent is not None:
            agent.terminate()
            agent.wait(30)
        forwarder.stop()
        netns.delete(node_ns)
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    sys.exit(main())
