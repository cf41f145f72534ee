"""A lab whose nodes run the DaemonSet's containers from the image (test support).

``ImageLab.start`` brings a 2-node bridge lab up with ``--agent external``
(the lab installs its chain with this checkout's launcher and runs no
agent), applies the real ``namespace.yaml`` and ``daemonset.yaml`` to its API
double (cni-watch asks about that DaemonSet when it stops), then on every
node runs what the kubelet would: the init container ``install-cni`` (which
replaces the launcher with the image's bundle), then ``agent`` and
``cni-watch``.  ``stop`` removes every container it started, then the lab.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import uuid
from dataclasses import dataclass, field

from firewall_lab.lab import ops, teardown
from firewall_lab.lab.client import Client
from firewall_lab.lab.layout import Layout
from tests.image import daemonset

KUBECONFIG_IN_POD = "/etc/podwall/kubeconfig"


@dataclass
class ImageLab:
    directory: str
    layout: Layout
    client: Client
    hosts: dict[str, daemonset.Host]
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    running: dict[str, list[str]] = field(default_factory=dict)  # node → its containers
    install_seconds: dict[str, float] = field(default_factory=dict)

    @classmethod
    def start(cls, directory: str) -> ImageLab:
        ops.up(directory, cni="bridge", agent="external", timeout=180)
        recorded, client = ops.client_for(directory)
        layout = recorded.layout(os.path.abspath(directory))
        hosts = {
            node.name: daemonset.Host.of_lab_node(node.name, node.netns, layout.node_dir(node))
            for node in layout.node_list()
        }
        lab = cls(directory, layout, client, hosts)
        kubectl(layout.kubeconfig, "apply", "-f", str(daemonset.MANIFEST.parent / "namespace.yaml"))
        kubectl(layout.kubeconfig, "apply", "-f", str(daemonset.MANIFEST))
        return lab

    def name(self, node: str, role: str, image: str) -> str:
        return f"pw{self.tag}-{node}-{role}-{image.rsplit(':', 1)[-1]}"

    def install(self, node: str, image: str) -> float:
        """Run the init container to completion; its wall time in seconds."""
        host = self.hosts[node]
        argv = daemonset.run_argv(
            "install-cni",
            host,
            image,
            container_name=self.name(node, "install", image),
            detach=False,
            extra=tuple(host.settings),
        )
        started = time.monotonic()
        daemonset.podman(*argv)
        self.install_seconds[node] = time.monotonic() - started
        return self.install_seconds[node]

    def run_containers(self, node: str, image: str) -> None:
        """The agent and cni-watch containers of ``node`` from ``image``, detached."""
        host = self.hosts[node]
        mount = (f"{host.kubeconfig}:{KUBECONFIG_IN_POD}:ro",)
        kube = ("--kubeconfig", KUBECONFIG_IN_POD)
        for role, extra in (("agent", kube), ("cni-watch", (*host.settings, *kube))):
            name = self.name(node, role, image)
            argv = daemonset.run_argv(
                role, host, image, container_name=name, detach=True, extra=extra, mounts=mount
            )
            daemonset.podman(*argv)
            self.running.setdefault(node, []).append(name)

    def stop_containers(self, node: str) -> str:
        """SIGTERM (30 s grace, as the pod's) and remove ``node``'s containers; their logs."""
        names = self.running.pop(node, [])
        if not names:
            return ""
        daemonset.podman("stop", "-t", "30", *names, check=False)
        logs = "".join(daemonset.podman("logs", n, check=False).stderr for n in names)
        daemonset.podman("rm", "-f", *names, check=False)
        return logs

    def logs(self, node: str, role: str) -> str:
        names = [n for n in self.running.get(node, []) if f"-{role}-" in n]
        return "".join(daemonset.podman("logs", n, check=False).stderr for n in names)

    def stop(self) -> None:
        for node in list(self.running):
            with contextlib.suppress(Exception):
                self.stop_containers(node)
        teardown.down(self.directory)


def kubectl(kubeconfig: str, *args: str) -> str:
    env = {**os.environ, "KUBECONFIG": kubeconfig}
    env["KUBECACHEDIR"] = os.path.join(os.path.dirname(kubeconfig), "kubectl-cache")
    done = subprocess.run(
        ["kubectl", *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
    return done.stdout
