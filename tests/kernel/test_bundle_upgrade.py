"""A bundle upgrade never pulls the modules from under a running plugin.

The plugin imports lazily, so a run that started from bundle A still reads
A's files while it works.  Here an ADD is started through the launcher of
bundle A and held mid-run: the test holds the node's podwall lock, and the
plugin imports its backend only once it has the lock.  Meanwhile the
installer switches the launcher to bundle B, a build of different code
(another id), with no grace period at all.  A must stay
(its run holds A's in-use lock), the ADD must finish with its result, and
only the next install after it removes A.  Then DEL runs through B.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from firewall_install import bundle, launcher
from firewall_lab import netns
from firewall_plugin import locking
from tests.kernel import plugin_cli


def waits_for(process: subprocess.Popen[str], path: Path, timeout: float = 30.0) -> bool:
    """True once ``process`` has ``path`` open (it is waiting for that lock)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            fds = os.listdir(f"/proc/{process.pid}/fd")
            if any(os.readlink(f"/proc/{process.pid}/fd/{fd}") == str(path) for fd in fds):
                return True
        except OSError:
            pass
        time.sleep(0.02)
    return False


def changed_source(tmp_path: Path) -> str:
    """A copy of firewall_plugin with one harmless change: another bundle id."""
    root = tmp_path / "next"
    shutil.copytree(
        Path(bundle.package_root()) / "firewall_plugin",
        root / "firewall_plugin",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    result = root / "firewall_plugin" / "result.py"
    result.write_text(result.read_text() + "\n# the next build\n")
    return str(root)


def current_bundle(bin_dir: Path) -> str:
    found = re.search(r"podwall\.d/(b-[0-9a-f]+)/", (bin_dir / "podwall").read_text())
    assert found, "a bundle launcher"
    return found.group(1)


def start(
    node: str, executable: Path, command: str, config: dict[str, Any], tmp_path: Path
) -> subprocess.Popen[str]:
    """The plugin through ``executable`` in ``node``, ``config`` on stdin, running."""
    stdin = tmp_path / f"{command}.json"
    stdin.write_text(json.dumps(config))
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": "upgrade1",
        "CNI_IFNAME": "eth0",
        "CNI_NETNS": netns.path(node),
        "CNI_PATH": "/usr/lib/cni",
        "CNI_ARGS": "K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=pod1;K8S_POD_UID=uid-1",
    }
    with stdin.open() as handle:
        return subprocess.Popen(
            ["ip", "netns", "exec", node, str(executable)],
            stdin=handle,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )


def test_an_add_started_before_an_upgrade_finishes_after_it(node_ns: str, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    launcher.install_executable(str(bin_dir), bundled=True, grace=0.0)
    old = current_bundle(bin_dir)
    prev = plugin_cli.prev_result(node_ns, "10.90.0.5/24")
    config = plugin_cli.conf(tmp_path, prev, backend="iptables-nft")
    with locking.podwall_lock(str(tmp_path / "run"), timeout=5):
        add = start(node_ns, bin_dir / "podwall", "ADD", config, tmp_path)
        assert waits_for(add, tmp_path / "run" / locking.LOCK_NAME), "the ADD waits for the lock"
        report = launcher.install_executable(
            str(bin_dir), bundled=True, grace=0.0, source=changed_source(tmp_path)
        )
        new = current_bundle(bin_dir)
        assert new != old, "a different build, a different bundle"
        assert any("copied" in line for line in report.actions), report
        assert (bin_dir / "podwall.d" / old / "retired").exists()
        assert (bin_dir / "podwall.d" / old / "complete").exists(), "in use: kept"
    out, err = add.communicate(timeout=60)
    assert add.returncode == 0, (out, err)
    assert json.loads(out)["ips"][0]["address"] == "10.90.0.5/24"
    launcher.install_executable(
        str(bin_dir), bundled=True, grace=0.0, source=changed_source(tmp_path / "again")
    )
    assert sorted(os.listdir(bin_dir / "podwall.d")) == [new], "unused now: removed"
    delete = start(node_ns, bin_dir / "podwall", "DEL", config, tmp_path)
    out, err = delete.communicate(timeout=60)
    assert delete.returncode == 0, (out, err)


def test_a_retired_bundle_stays_for_the_grace_period(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    launcher.install_executable(str(bin_dir), bundled=True)
    old = current_bundle(bin_dir)
    launcher.install_executable(str(bin_dir), bundled=True, source=changed_source(tmp_path))
    retired = bin_dir / "podwall.d" / old / "retired"
    assert retired.exists()
    when = retired.stat().st_mtime
    assert launcher.prune(str(bin_dir), keep=current_bundle(bin_dir), grace=60, now=when + 59) == []
    assert launcher.prune(str(bin_dir), keep=current_bundle(bin_dir), grace=60, now=when + 61)
    assert not (bin_dir / "podwall.d" / old).exists()
