"""The DaemonSet's install steps, run for real: the layout they leave works as a CNI chain.

The init container's and the cni-watch sidecar's exact arguments are read from
``deploy/base/daemonset.yaml``; the container paths of the host folders
(``/host/opt/cni/bin``, ``/host/etc/cni/net.d``) are mapped to temporary
folders, and podwall's state and run folders to temporary ones too (the
machine's own ``/var/lib/podwall`` is never touched).  The bin folder starts
with only the primary CNI's plugins, the conf folder with only its conflist
(bridge + host-local + portmap).  After the install, the conflist runner runs
ADD, CHECK and DEL through the chain inside a throwaway node namespace.  The
sidecar's removal check asks an API server double (``--kubeconfig`` added,
its env taken from the manifest) that holds no podwall DaemonSet: its SIGTERM
is the one of an uninstall.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from firewall_lab import netns
from firewall_lab.apiserver import ApiServer, write_kubeconfig
from firewall_lab.cni_conf import Attachment
from firewall_lab.cni_runner import Runner
from firewall_plugin import names

ROOT = pathlib.Path(__file__).resolve().parents[2]
DAEMONSET = ROOT / "deploy" / "base" / "daemonset.yaml"
PODWALL = os.path.join(os.path.dirname(sys.executable), "podwall")
REFERENCE = os.environ.get("PODWALL_CNI_PATH", "/usr/lib/cni")
PRIMARY_PLUGINS = ("bridge", "host-local", "portmap", "loopback")
HOST_BIN, HOST_CONF = "/host/opt/cni/bin", "/host/etc/cni/net.d"


def container(name: str) -> dict[str, Any]:
    """The DaemonSet container (or init container) ``name``."""
    spec = yaml.safe_load(DAEMONSET.read_text())["spec"]["template"]["spec"]
    for found in spec.get("initContainers", []) + spec["containers"]:
        if found["name"] == name:
            result: dict[str, Any] = found
            return result
    raise AssertionError(f"no container {name} in {DAEMONSET}")


def container_args(name: str) -> list[str]:
    """The args of the DaemonSet container (or init container) ``name``."""
    return [str(arg) for arg in container(name)["args"]]


def container_env(name: str) -> dict[str, str]:
    """The container's env as the kubelet sets it (the pod in namespace podwall-system)."""
    fields = {"metadata.namespace": "podwall-system"}
    return {
        item["name"]: str(item["value"])
        if "value" in item
        else fields[item["valueFrom"]["fieldRef"]["fieldPath"]]
        for item in container(name).get("env", [])
    }


def primary_conflist(root: pathlib.Path) -> dict[str, Any]:
    """The primary CNI's conflist: bridge + host-local + portmap, IPAM state under ``root``."""
    return {
        "cniVersion": "1.0.0",
        "name": "podnet",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": False,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(root / "ipam"),
                    "ranges": [[{"subnet": "10.88.0.0/24"}]],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": False},
        ],
    }


class Host:
    """A node's folders: CNI bin and conf, podwall state/run, IPAM, runner cache."""

    def __init__(
        self, root: pathlib.Path, *, create: bool = True, podwall: pathlib.Path | None = None
    ) -> None:
        """``podwall``: where podwall's state and run folders live (default: under ``root``)."""
        self.root = root
        self.state = (podwall or root) / "state"
        self.run = (podwall or root) / "run"
        self.bin = root / "opt" / "cni" / "bin"
        self.conf = root / "etc" / "cni" / "net.d"
        self.primary = primary_conflist(root)
        if create:
            self.create()

    def create(self) -> None:
        root = self.root
        for folder in (self.bin, self.conf, self.state, self.run, root / "ipam"):
            folder.mkdir(parents=True, exist_ok=folder in (self.state, self.run))
        for plugin in PRIMARY_PLUGINS:
            (self.bin / plugin).symlink_to(os.path.join(REFERENCE, plugin))
        self.write_primary(self.primary)

    @property
    def conflist(self) -> pathlib.Path:
        return self.conf / "10-podnet.conflist"

    def write_primary(self, network: dict[str, Any]) -> None:
        """Rewrite the conflist as a primary CNI does (whole file, by rename)."""
        temp = self.conf / ".primary.tmp"
        temp.write_text(json.dumps(network, indent=1))
        temp.rename(self.conflist)

    def podwall_args(self, container: str, *extra: str) -> list[str]:
        """The container's args with the /host folders mapped to this host's."""
        mapped = {HOST_BIN: str(self.bin), HOST_CONF: str(self.conf), "/host": "/"}
        args = [mapped.get(arg, arg) for arg in container_args(container)]
        assert not [arg for arg in args if arg.startswith("/host/")], args
        state, run = str(self.state), str(self.run)
        return [*args, "--state-dir", state, "--run-dir", run, *extra]

    def types(self) -> list[str]:
        return [p["type"] for p in json.loads(self.conflist.read_text())["plugins"]]


def run_podwall(args: list[str]) -> None:
    done = subprocess.run([PODWALL, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"podwall {' '.join(args)}:\n{done.stdout}\n{done.stderr}"


def chains_of(node: str) -> str:
    """Every podwall line of the node's filter tables (both variants, IPv4)
    and of podwall's nftables table (the backend ``auto`` picks here)."""
    text = ""
    for save in ("iptables-nft-save", "iptables-legacy-save"):
        text += netns.run(node, [save, "-t", "filter"], check=False).stdout
    text += netns.run(node, ["nft", "list", "table", "inet", "podwall"], check=False).stdout
    return "\n".join(line for line in text.splitlines() if "PODWALL" in line)


def add_check_del(host: Host, node: str, pod: str) -> None:
    """ADD, CHECK and DEL through the installed chain; podwall's chains come and go."""
    runner = Runner(cni_path=[str(host.bin)], cache_dir=str(host.root / "cache"), exec_netns=node)
    attachment = Attachment(
        container_id="layout0001",
        netns=netns.path(pod),
        args={"K8S_POD_NAMESPACE": "default", "K8S_POD_NAME": "a", "K8S_POD_UID": "u-1"},
    )
    network = str(host.conflist)
    result = runner.add(network, attachment)
    assert [ip["address"].startswith("10.88.0.") for ip in result["ips"]] == [True]
    ingress = names.ingress_chain("layout0001", "eth0")
    egress = names.egress_chain("layout0001", "eth0")
    rules = chains_of(node)
    assert ingress in rules and egress in rules, rules
    runner.check(network, attachment)
    runner.delete(network, attachment)
    assert ingress not in chains_of(node) and egress not in chains_of(node)
    assert os.listdir(host.state / "endpoints") == []


def bundled_python(host: Host) -> pathlib.Path:
    found = sorted(host.bin.glob("podwall.d/*/python/bin/python3*"))
    assert len(found) == 1, f"one bundled interpreter expected: {found}"
    return found[0]


def test_init_container_install_makes_a_working_chain(
    tmp_path: pathlib.Path, node_ns: str, make_ns: Callable[[], str]
) -> None:
    host = Host(tmp_path / "node")
    run_podwall(host.podwall_args("install-cni"))
    assert host.types() == ["bridge", "portmap", "podwall"]
    assert sorted(os.listdir(host.bin)) == sorted([*PRIMARY_PLUGINS, "podwall", "podwall.d"])

    # the bundled interpreter runs from the bundle, not from this machine's Python
    python = bundled_python(host)
    probe = "import json, sys; print(json.dumps([sys.prefix, json.__file__]))"
    env = {"LD_LIBRARY_PATH": str(python.parent.parent / "lib"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [str(python), "-I", "-S", "-c", probe], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    for path in json.loads(done.stdout):
        assert path.startswith(str(host.bin / "podwall.d")), path

    add_check_del(host, node_ns, make_ns())

    run_podwall(["cni", "uninstall", "--bin-dir", str(host.bin), "--conf-dir", str(host.conf)])
    assert json.loads(host.conflist.read_text()) == host.primary
    assert sorted(os.listdir(host.bin)) == sorted(PRIMARY_PLUGINS)


def test_bundle_runs_from_the_hosts_view_of_the_bin_folder(
    tmp_path: pathlib.Path, node_ns: str, make_ns: Callable[[], str]
) -> None:
    """The init container writes through /host/opt/cni/bin; the host runs /opt/cni/bin.

    The bin and conf folders are installed through one path and used through
    another (the folder is renamed in between).  podwall's state and run
    folders stay put: the DaemonSet mounts them at their host paths.
    """
    state = tmp_path / "podwall"
    container_view = Host(tmp_path / "container", podwall=state)
    run_podwall(container_view.podwall_args("install-cni"))
    (tmp_path / "container").rename(tmp_path / "node")
    host = Host(tmp_path / "node", create=False, podwall=state)
    for written in [host.bin / "podwall", *host.bin.glob("podwall.d/*/launch.py")]:
        assert str(tmp_path / "container") not in written.read_text(), written
    add_check_del(host, node_ns, make_ns())


@pytest.fixture
def watcher(tmp_path: pathlib.Path) -> Iterator[tuple[Host, subprocess.Popen[str]]]:
    host = Host(tmp_path / "node")
    server = ApiServer()  # no podwall DaemonSet in it: the sidecar's exit is an uninstall
    kubeconfig = write_kubeconfig(str(tmp_path / "kubeconfig"), server.start())
    args = host.podwall_args("cni-watch", "--watch-interval", "0.1", "--kubeconfig", kubeconfig)
    env = {**os.environ, **container_env("cni-watch")}
    proc = subprocess.Popen(
        [PODWALL, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        yield host, proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        server.stop()


def wait_for(check: Callable[[], bool], *, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_watch_sidecar_reinserts_after_primary_rewrites_and_reverts_on_exit(
    watcher: tuple[Host, subprocess.Popen[str]],
) -> None:
    host, proc = watcher
    chained = ["bridge", "portmap", "podwall"]
    wait_for(lambda: host.conflist.exists() and host.types() == chained)

    seen: list[str] = []
    stop = threading.Event()

    def reader() -> None:  # what the runtime sees while both sides write
        while not stop.is_set():
            try:
                types = [p["type"] for p in json.loads(host.conflist.read_text())["plugins"]]
            except FileNotFoundError:
                types = ["<missing>"]
            except ValueError as exc:
                types = [f"<invalid: {exc}>"]
            seen.append(",".join(types))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for round_ in range(5):
            rewritten = json.loads(json.dumps(host.primary))
            rewritten["plugins"][0]["mtu"] = 1400 + round_  # the primary CNI drops podwall
            host.write_primary(rewritten)
            wait_for(lambda: host.types() == chained)
            assert json.loads(host.conflist.read_text())["plugins"][0]["mtu"] == 1400 + round_
    finally:
        stop.set()
        thread.join()
    allowed = {"bridge,portmap", "bridge,portmap,podwall"}
    assert set(seen) <= allowed, sorted(set(seen) - allowed)

    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "DaemonSet podwall-system/podwall-agent is gone: uninstalling podwall" in err, err
    assert host.types() == ["bridge", "portmap"]
    assert not (host.bin / "podwall").exists() and not (host.bin / "podwall.d").exists()
