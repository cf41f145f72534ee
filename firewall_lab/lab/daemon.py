"""The lab process: ``python -m firewall_lab.lab.daemon --dir DIR``.

Started detached by ``podwall lab up`` (after it wrote ``DIR/lab.json``), it
builds the underlay and the nodes, installs the CNI chain on each, runs the
API server double (CRDs applied, one Node object per node, ``DIR/kubeconfig``
for the machine and ``DIR/nodes/N/kubeconfig`` for the node's agent), starts
one agent per node inside the node's namespace and the lab kubelet, then
sets ``phase: ready`` in the state file and serves until SIGTERM, when it
deletes every pod through CNI DEL, stops the agents and removes the
namespaces.  A failure during start-up sets ``phase: failed`` and the error.

Agents: ``podwall agent`` when ``firewall_operator.agent`` exists (``--agent
auto``, the default, or ``podwall``), else the stand-in ``programmer``;
``none`` runs no agent (pods then get the plugin's ``podDefault: allow``);
``external`` runs none either but keeps ``podDefault: deny`` and records the
nodes as having agents, which something else starts (the image tests run
the DaemonSet's containers from the image).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import signal
import subprocess
import sys
import threading
import traceback

from firewall_lab import netns
from firewall_lab.apiserver import write_kubeconfig
from firewall_lab.lab import objects, state, topology, trafficlogs
from firewall_lab.lab.apiserve import LabApiServer
from firewall_lab.lab.kubelet import Kubelet
from firewall_lab.lab.layout import API_IP, Layout, Node

log = logging.getLogger("podwall.lab")


def agent_kind(wanted: str) -> str:
    """``podwall``, ``programmer`` or ``none`` for ``--agent`` ``wanted``."""
    if wanted != "auto":
        return wanted
    found = importlib.util.find_spec("firewall_operator.agent") is not None
    return "podwall" if found else "programmer"


def agent_argv(kind: str, layout: Layout, node: Node, *, upstream: bool = False) -> list[str]:
    kubeconfig = layout.node_dir(node, "kubeconfig")
    conf_dir = layout.node_dir(node, "net.d")
    if kind == "podwall":
        tail = ["-m", "podwall", "agent", "--node", node.name, "--kubeconfig", kubeconfig]
        tail += ["--cni-conf-dir", conf_dir, "--metrics-port", "0", "--health-port", "0"]
        tail += ["--traffic-log", trafficlogs.path(layout, node.name)]
        tail += ["--upstream-policy"] if upstream else []
    else:
        tail = ["-m", "firewall_lab.lab.programmer", "--node", node.name]
        tail += ["--kubeconfig", kubeconfig, "--cni-conf-dir", conf_dir]
    return ["ip", "netns", "exec", node.netns, sys.executable, *tail]


class Lab:
    """One running lab (inside the lab process)."""

    def __init__(self, directory: str) -> None:
        self.recorder = state.Recorder(directory, state.load(directory))
        self.layout = self.recorder.state.layout(directory)
        self.kind = agent_kind(self.recorder.state.agent)
        self.server: LabApiServer | None = None
        self.kubelet: Kubelet | None = None
        self.agents: dict[str, subprocess.Popen[bytes]] = {}

    def build(self) -> None:
        layout, recorder = self.layout, self.recorder
        topology.make_underlay(layout, recorder)
        pod_default = "allow" if self.kind == "none" else "deny"
        for node in layout.node_list():
            topology.make_node(layout, node, recorder)
            topology.install_cni(layout, node, pod_default=pod_default)
        topology.route_nodes(layout)
        self.server = LabApiServer(bookmark_interval=5.0)
        self.server.extra_netns, self.server.extra_host = layout.lab_netns, API_IP
        self.server.start()
        recorder.update(api_port=self.server.port)
        write_kubeconfig(layout.kubeconfig, self.server.url)
        for node in layout.node_list():
            url = f"http://{API_IP}:{self.server.port}"
            write_kubeconfig(layout.node_dir(node, "kubeconfig"), url)
        objects.seed(self.server, layout, upstream=recorder.state.upstream_policy_crds)
        self.start_agents()
        self.kubelet = Kubelet(layout, self.server, recorder)
        self.kubelet.start()
        recorder.update(phase="ready")

    def start_agents(self) -> None:
        if self.kind == "none":
            return
        if self.kind == "external":
            self.recorder.update(agents={n.name: "external" for n in self.layout.node_list()})
            return
        for node in self.layout.node_list():
            logfile = open(self.layout.node_dir(node, "agent.log"), "ab")  # noqa: SIM115
            process = subprocess.Popen(
                agent_argv(
                    self.kind, self.layout, node, upstream=self.recorder.state.upstream_policy_crds
                ),
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=subprocess.STDOUT,
            )
            logfile.close()
            self.agents[node.name] = process
            self.recorder.pid(f"agent/{node.name}", process.pid)
        self.recorder.update(agents={name: self.kind for name in self.agents})

    def shutdown(self) -> None:
        self.recorder.update(phase="stopping")
        if self.kubelet is not None:
            self.kubelet.stop_all()
        for process in self.agents.values():
            process.terminate()
        for process in self.agents.values():
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.server is not None:
            self.server.stop()
        for name in reversed(list(self.recorder.state.netns)):
            netns.delete(name)
            self.recorder.forget_netns(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m firewall_lab.lab.daemon")
    parser.add_argument("--dir", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    lab = Lab(os.path.abspath(args.dir))
    try:
        lab.build()
    except Exception as exc:
        log.error("lab start-up failed:\n%s", traceback.format_exc())
        lab.recorder.update(phase="failed", error=f"{type(exc).__name__}: {exc}")
        lab.shutdown()
        lab.recorder.update(phase="failed")
        return 1
    log.info("lab ready: %s", lab.server.url if lab.server else "")
    stop.wait()
    log.info("lab stopping")
    lab.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
