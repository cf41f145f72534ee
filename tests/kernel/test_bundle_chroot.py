"""The installed plugin runs with nothing of this machine but glibc and a kernel.

A chroot holds only: the bundle as ``cni install --bundle`` writes it (in
``/opt/cni/bin``), the glibc libraries its ELF files link and the loader they
name, copied from this machine (the "host"), and a static busybox as
``/bin/sh`` for the launcher.  No Python, no iptables, no ``/proc``.  The
plugin runs there inside a throwaway node namespace.

* VERSION and STATUS show the mechanics: the launcher, the interpreter, the
  sourceless standard library and the plugin all start in the jail; STATUS
  with an iptables backend answers code 50 saying the host lacks the tools.
* ADD, CHECK and DEL need a backend that runs on glibc and a kernel alone:
  ``nftables`` (pure Python over netlink).  That test is skipped until
  ``firewall_plugin.config.BACKENDS`` offers it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from firewall_install import bundle, elf, glibc, launcher
from firewall_lab import netns
from firewall_plugin import config
from tests.kernel import plugin_cli

BUSYBOX = shutil.which("busybox") or "/bin/busybox"
HAS_NFT = "nftables" in config.BACKENDS
NO_NFT = "needs the nftables backend (firewall_plugin.config.BACKENDS has no 'nftables' yet)"


def static_busybox() -> str | None:
    info = elf.read(BUSYBOX) if os.path.isfile(BUSYBOX) else None
    return BUSYBOX if info is not None and not info.needed and not info.interpreter else None


@pytest.fixture(scope="module")
def jail(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if static_busybox() is None:
        pytest.skip("needs a static busybox (Debian: busybox-static; make image-deps)")
    root = tmp_path_factory.mktemp("jail")
    bin_dir = root / "opt" / "cni" / "bin"
    bin_dir.mkdir(parents=True)
    launcher.install_executable(str(bin_dir), bundled=True)
    for name in libraries_of(bin_dir):
        copy_from_host(root, name)
    (root / "bin").mkdir()
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    (root / "bin" / "sh").symlink_to("busybox")
    for folder in ("run/netns", "var/lib/podwall", "run/podwall", "tmp"):
        (root / folder).mkdir(parents=True)
    return root


def libraries_of(bin_dir: Path) -> set[str]:
    """Absolute paths of the glibc files the bundle's ELF files load (and the loader)."""
    wanted: set[str] = set()
    for _, info in glibc.elf_files([str(bin_dir)]):
        wanted.update(f"lib:{name}" for name in info.needed if not name.startswith("libpython"))
        if info.interpreter:
            wanted.add(info.interpreter)
    libc = glibc.find_libc("/")
    assert libc is not None, "the host has glibc"
    found = {
        os.path.join(os.path.dirname(libc), w[4:]) if w.startswith("lib:") else w for w in wanted
    }
    return found


def copy_from_host(root: Path, path: str) -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(os.path.realpath(path), target)


def jailed(
    root: Path,
    node: str,
    command: str,
    conf: dict[str, Any],
    *,
    pod_netns: str = "",
) -> plugin_cli.Outcome:
    """Run ``/opt/cni/bin/podwall`` in the jail, in ``node``; the pod's netns bound in."""
    inside = f"/run/netns/{pod_netns}" if pod_netns else "/run/netns/none"
    env = {
        "PATH": "/bin",
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": "jail1",
        "CNI_IFNAME": "eth0",
        "CNI_NETNS": inside,
        "CNI_PATH": "/opt/cni/bin",
        "CNI_ARGS": "K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=pod1;K8S_POD_UID=uid-1",
    }
    script = 'exec chroot "$1" /opt/cni/bin/podwall'
    if pod_netns:
        (root / inside.lstrip("/")).touch()
        script = f'mount --bind "$2" "$1{inside}" && {script}'
    done = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            node,
            "/bin/sh",
            "-c",
            script,
            "sh",
            str(root),
            netns.path(pod_netns) if pod_netns else "",
        ],
        input=json.dumps(conf),
        env={**env, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = json.loads(done.stdout) if done.stdout.strip() else None
    return plugin_cli.Outcome(done.returncode, output, done.stderr)


def test_the_jail_holds_only_glibc_busybox_and_the_bundle(jail: Path) -> None:
    files = sorted(str(p.relative_to(jail)) for p in jail.rglob("*") if p.is_file())
    others = {Path(f).name for f in files if not f.startswith("opt/cni/bin/")}
    assert others <= {"busybox", "sh", *bundle.GLIBC_LIBS}, others
    assert "libc.so.6" in others


def test_version_and_status_run_in_the_jail(jail: Path, node_ns: str) -> None:
    version = jailed(jail, node_ns, "VERSION", {"cniVersion": "1.0.0"})
    assert version.status == 0, version.stderr
    assert "1.1.0" in version.output["supportedVersions"]
    status_conf = {
        "cniVersion": "1.1.0",
        "name": "jail",
        "type": "podwall",
        "backend": "iptables-nft",
    }
    status = jailed(jail, node_ns, "STATUS", status_conf)
    assert status.status == 1 and status.code == 50, status
    assert "not found on PATH" in status.output["msg"], status.output
    assert "Traceback" not in status.stderr


def attached_pod(node_ns: str, make_ns: Any) -> tuple[str, dict[str, Any]]:
    """A pod netns wired to the node by a veth, and a prevResult naming both."""
    pod = make_ns("pwjail")
    link = ["ip", "link", "add", "vethjail", "type", "veth", "peer", "name", "eth0"]
    netns.run(node_ns, [*link, "netns", pod])
    netns.run(node_ns, ["ip", "link", "set", "vethjail", "up"])
    return pod, plugin_cli.prev_result(pod, "10.91.0.5/24", host=("vethjail",))


def plugin_conf(backend: str, prev: dict[str, Any]) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "jail",
        "type": "podwall",
        "backend": backend,
        "agentTimeoutMs": 0,
        "prevResult": prev,
    }


def records(jail: Path) -> list[Path]:
    return list((jail / "var" / "lib" / "podwall").rglob("*.json"))


def test_an_iptables_add_in_the_jail_says_what_the_host_lacks(
    jail: Path, node_ns: str, make_ns: Any
) -> None:
    """The ADD path's mechanics (netns bound in, records, lock) with a backend
    whose tools the jail lacks: code 100 naming the fix, nothing left behind."""
    pod, prev = attached_pod(node_ns, make_ns)
    added = jailed(jail, node_ns, "ADD", plugin_conf("iptables-nft", prev), pod_netns=pod)
    assert added.status == 1 and added.code == 100, added
    assert "not found on PATH" in added.output["msg"] and "nftables" in added.output["msg"]
    assert records(jail) == []


@pytest.mark.skipif(not HAS_NFT, reason=NO_NFT)
def test_add_check_del_with_nftables_in_the_jail(jail: Path, node_ns: str, make_ns: Any) -> None:
    pod, prev = attached_pod(node_ns, make_ns)
    conf = plugin_conf("nftables", prev)
    added = jailed(jail, node_ns, "ADD", conf, pod_netns=pod)
    assert added.status == 0, added
    assert added.output["ips"][0]["address"] == "10.91.0.5/24"
    assert len(records(jail)) == 1
    assert "podwall" in netns.run(node_ns, ["nft", "list", "ruleset"]).stdout
    checked = jailed(jail, node_ns, "CHECK", conf, pod_netns=pod)
    assert checked.status == 0, checked
    deleted = jailed(jail, node_ns, "DEL", conf, pod_netns=pod)
    assert deleted.status == 0, deleted
    assert records(jail) == []
