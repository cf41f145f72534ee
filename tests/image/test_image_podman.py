"""Real containers, started by podman through the conflists the image installed.

podman is a real CNI client (its ``cni`` network backend): it creates each
container's network namespace and runs the conflist's plugins, the bridge and
then the bundle's ``podwall``, itself.  Everything happens in a throwaway
node namespace (podman runs under ``nsenter --net``, so its plugins program
that namespace, never the machine's).

podman passes no Kubernetes identity (only ``K8S_POD_NAME``, the container's
name), so no policy can select its containers; what they get is the plugin's
``podDefault``.  Two networks show both verdicts: ``pwopen`` installed with
``--pod-default allow``, ``pwclosed`` with ``--pod-default deny``.  A client
on pwopen reaches a server on pwopen (allowed) and not one on pwclosed
(denied by podwall's rules; the node routes between the two bridges).
Removing the containers runs DEL: podwall's records and chains go.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from firewall_lab import netns
from tests.image import daemonset

NETWORKS = {"pwopen": ("10.250.1.0/24", "allow"), "pwclosed": ("10.250.2.0/24", "deny")}
SERVER = ["--entrypoint", "python3", daemonset.IMAGE, "-m", "http.server", "8080"]


class PodmanNode:
    """A node netns, its CNI folders, and a containers.conf pointing podman at them."""

    def __init__(self, root: Path, name: str) -> None:
        self.root, self.netns = root, name
        self.bin, self.conf = root / "bin", root / "net.d"
        self.containers_conf = root / "containers.conf"
        self.names: list[str] = []

    def podman(self, *args: str, check: bool = True) -> str:
        argv = ["--net=" + netns.path(self.netns), "podman", *args]
        return daemonset.nsenter(*argv, check=check, containers_conf=str(self.containers_conf))

    def run(self, name: str, network: str, *argv: str) -> str:
        self.names.append(name)
        self.podman("run", "-d", "--name", name, "--network", network, *argv)
        found = self.podman("inspect", name, "--format", "{{json .NetworkSettings.Networks}}")
        address: str = json.loads(found)[network]["IPAddress"]
        return address

    def connects(self, client: str, address: str) -> bool:
        probe = (
            "import socket, sys\n"
            f"try: socket.create_connection(({address!r}, 8080), timeout=3).close()\n"
            "except OSError: sys.exit(1)"
        )
        done = self.podman("exec", client, "python3", "-c", probe, check=False)
        return done == "ok"


def install(node: PodmanNode, conf_dir: Path, pod_default: str) -> None:
    """The init container into this node's folders, as the DaemonSet runs it."""
    host = daemonset.Host(
        node.netns,
        node.netns,
        {**daemonset.machine_volumes(), "cni-bin": str(node.bin), "cni-conf": str(conf_dir)},
    )
    settings = ["--pod-default", pod_default, "--backend", "iptables-nft"]
    settings += ["--state-dir", str(node.root / "state"), "--run-dir", str(node.root / "run")]
    argv = daemonset.run_argv(
        "install-cni", host, daemonset.IMAGE, container_name=f"{node.netns}-install",
        detach=False, extra=tuple(settings),
    )  # fmt: skip
    daemonset.podman(*argv)


def network(name: str, subnet: str, ipam_dir: Path) -> dict[str, object]:
    ipam = {"type": "host-local", "ranges": [[{"subnet": subnet}]], "dataDir": str(ipam_dir)}
    bridge = {"type": "bridge", "bridge": f"br-{name}"[:15], "isDefaultGateway": True, "ipam": ipam}
    return {"cniVersion": "1.0.0", "name": name, "plugins": [bridge]}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodmanNode]:
    root = tmp_path_factory.mktemp("podman")
    name = netns.create(netns.unique_name("pwpm"), sysctls={"net.ipv4.ip_forward": "1"})
    made = PodmanNode(root, name)
    try:
        made.bin.mkdir()
        made.conf.mkdir()
        for plugin in os.listdir("/usr/lib/cni"):
            (made.bin / plugin).symlink_to(f"/usr/lib/cni/{plugin}")
        for index, (net, (subnet, pod_default)) in enumerate(NETWORKS.items()):
            conf_dir = root / f"net-{net}.d"
            conf_dir.mkdir()
            (conf_dir / f"10-{net}.conflist").write_text(
                json.dumps(network(net, subnet, root / "ipam"))
            )
            install(made, conf_dir, pod_default)
            shutil.copy(conf_dir / f"10-{net}.conflist", made.conf / f"{10 + index}-{net}.conflist")
        text = Path(daemonset.CONTAINERS_CONF).read_text()
        dirs = f'network_config_dir = "{made.conf}"\ncni_plugin_dirs = ["{made.bin}"]\n'
        made.containers_conf.write_text(text.replace("[network]\n", "[network]\n" + dirs))
        yield made
    finally:
        for container in made.names:
            made.podman("rm", "-f", "-t", "0", container, check=False)
        netns.delete(name)


def test_podman_containers_get_podwall_verdicts(node: PodmanNode) -> None:
    web = node.run(f"{node.netns}-web", "pwopen", *SERVER)
    closed = node.run(f"{node.netns}-closed", "pwclosed", *SERVER)
    node.run(f"{node.netns}-client", "pwopen", "--entrypoint", "sleep", daemonset.IMAGE, "600")
    records = sorted(p.name for p in (node.root / "state" / "endpoints").iterdir())
    assert len(records) == 3, records
    client = f"{node.netns}-client"
    assert wait_connects(node, client, web), "pwopen -> pwopen: allowed"
    assert not node.connects(client, closed), "pwopen -> pwclosed: denied by podDefault deny"
    assert node.connects(f"{node.netns}-closed", closed), "the denied server does listen"
    chains = netns.run(node.netns, ["iptables-nft-save", "-t", "filter"]).stdout
    assert "default deny until programmed" in chains
    for container in list(node.names):
        node.podman("rm", "-f", "-t", "0", container)
        node.names.remove(container)
    assert list((node.root / "state" / "endpoints").iterdir()) == []
    chains = netns.run(node.netns, ["iptables-nft-save", "-t", "filter"]).stdout
    assert "PODWALL-I-" not in chains and "PODWALL-E-" not in chains


def wait_connects(node: PodmanNode, client: str, address: str, tries: int = 20) -> bool:
    for _ in range(tries):
        if node.connects(client, address):
            return True
        time.sleep(0.25)
    return False
