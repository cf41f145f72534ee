"""``podwall cni install --watch --uninstall-on-exit=if-daemonset-gone`` against the API double.

The watcher runs as a real process (plain launcher, tmp CNI folders), finds its
DaemonSet from ``POD_NAMESPACE``/``DAEMONSET_NAME`` as in the DaemonSet's
cni-watch container, and reaches the API server double through
``--kubeconfig``.  Each case sets the cluster up, lets the watcher see it,
changes it (or not), sends SIGTERM and checks whether podwall is still
chained and its executable still there.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from firewall_lab.apiserver import ApiServer, write_kubeconfig
from tests.e2e.conftest import ApiServerHandle

FIXTURES = Path(__file__).parents[1] / "fixtures" / "conflists"
PRIMARY = "10-containerd-net.conflist"

DAEMONSET = """
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: %(name)s, namespace: %(ns)s, finalizers: %(finalizers)s}
spec:
  selector: {matchLabels: {app: podwall}}
  template:
    metadata: {labels: {app: podwall}}
    spec: {containers: [{name: agent, image: podwall}]}
"""
NAMESPACE = "apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n"
HOLD = "podwall.io/test-hold"


def kubectl_at(kubeconfig: str, *args: str, stdin: str | None = None) -> str:
    env = dict(os.environ, KUBECONFIG=kubeconfig)
    env["KUBECACHEDIR"] = os.path.join(os.path.dirname(kubeconfig), "cache")
    done = subprocess.run(
        ["kubectl", *args], input=stdin, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
    return done.stdout


def create_daemonset(kubeconfig: str, ns: str, name: str, *, hold: bool = False) -> None:
    kubectl_at(kubeconfig, "apply", "-f", "-", stdin=NAMESPACE % ns)
    finalizers = f"[{HOLD}]" if hold else "[]"
    manifest = DAEMONSET % {"name": name, "ns": ns, "finalizers": finalizers}
    kubectl_at(kubeconfig, "apply", "-f", "-", stdin=manifest)


@dataclass
class Watcher:
    """A running ``podwall cni install --watch`` and the lines of its stderr."""

    bin_dir: Path
    conf: Path
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    def chained(self) -> bool:
        plugins: list[dict[str, Any]] = json.loads((self.conf / PRIMARY).read_text())["plugins"]
        return bool(plugins[-1]["type"] == "podwall")

    def installed(self) -> bool:
        return self.chained() and (self.bin_dir / "podwall").exists()

    def stop(self) -> str:
        """SIGTERM, wait for exit 0; returns all of stderr."""
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(timeout=30) == 0, "\n".join(self.lines)
        assert self.reader is not None
        self.reader.join(timeout=10)
        return "\n".join(self.lines)


def start_watcher(tmp_path: Path, kubeconfig: str, ns: str, name: str) -> Watcher:
    bin_dir, conf = tmp_path / "bin", tmp_path / "net.d"
    bin_dir.mkdir(parents=True)
    conf.mkdir()
    shutil.copy(FIXTURES / PRIMARY, conf / PRIMARY)
    command = [sys.executable, "-m", "podwall", "cni", "install"]
    command += ["--bin-dir", str(bin_dir), "--conf-dir", str(conf), "--watch"]
    command += ["--watch-interval", "0.1", "--uninstall-on-exit=if-daemonset-gone"]
    command += ["--kubeconfig", kubeconfig]
    env = dict(os.environ, POD_NAMESPACE=ns, DAEMONSET_NAME=name)
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    )
    watcher = Watcher(bin_dir=bin_dir, conf=conf, process=process)

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            watcher.lines.append(line.rstrip("\n"))

    watcher.reader = threading.Thread(target=read, daemon=True)
    watcher.reader.start()
    return watcher


def wait_for(check: Callable[[], bool], *, timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def run_watcher(tmp_path: Path) -> Iterator[Callable[[str, str, str], Watcher]]:
    started: list[Watcher] = []

    def run(kubeconfig: str, ns: str, name: str) -> Watcher:
        watcher = start_watcher(tmp_path / f"node{len(started)}", kubeconfig, ns, name)
        started.append(watcher)
        wait_for(lambda: watcher.process.poll() is not None or watcher.installed(), what="install")
        assert watcher.process.poll() is None, "\n".join(watcher.lines)
        return watcher

    yield run
    for watcher in started:
        if watcher.process.poll() is None:
            watcher.process.kill()
            watcher.process.wait(timeout=10)


def works(watcher: Watcher) -> Callable[[], bool]:
    return lambda: any("removal check works" in line for line in watcher.lines)


# What each case does between "the watcher sees the DaemonSet" and SIGTERM.
CASES: dict[str, tuple[bool, Callable[[str, str, str], object], bool, str]] = {
    # id: (hold finalizer, change, installed after SIGTERM, stderr says)
    "present-rolling-update": (False, lambda kc, ns, name: None, True, "is present"),
    "deleted": (
        False,
        lambda kc, ns, name: kubectl_at(kc, "delete", "ds", "-n", ns, name),
        False,
        "is gone",
    ),
    "being-deleted": (
        True,
        lambda kc, ns, name: kubectl_at(kc, "delete", "ds", "-n", ns, name, "--wait=false"),
        False,
        "is being deleted",
    ),
    "namespace-deleted": (
        False,
        lambda kc, ns, name: kubectl_at(kc, "delete", "namespace", ns, "--wait=false"),
        False,
        "is gone",
    ),
}


@pytest.mark.parametrize(("hold", "change", "installed", "says"), CASES.values(), ids=list(CASES))
def test_sigterm_uninstalls_only_when_the_daemonset_goes(
    apiserver: ApiServerHandle,
    run_watcher: Callable[[str, str, str], Watcher],
    request: pytest.FixtureRequest,
    hold: bool,
    change: Callable[[str, str, str], object],
    installed: bool,
    says: str,
) -> None:
    case = request.node.callspec.id
    ns, name = f"pw-{case}", "podwall-agent"
    create_daemonset(apiserver.kubeconfig, ns, name, hold=hold)
    watcher = run_watcher(apiserver.kubeconfig, ns, name)
    wait_for(works(watcher), what="the first answer about the DaemonSet")
    change(apiserver.kubeconfig, ns, name)
    err = watcher.stop()
    assert watcher.installed() is installed, err
    assert says in err and "Traceback" not in err, err
    assert f"DaemonSet {ns}/{name}" in err
    if hold:  # let the double finish the deletion
        patch = json.dumps({"metadata": {"finalizers": None}})
        kubectl_at(apiserver.kubeconfig, "patch", "ds", "-n", ns, name, "--type=merge", "-p", patch)


def test_api_down_at_exit_keeps_podwall(
    tmp_path: Path, run_watcher: Callable[[str, str, str], Watcher]
) -> None:
    """Access worked, then the API server went away: cannot tell, so podwall stays."""
    server = ApiServer()
    kubeconfig = write_kubeconfig(str(tmp_path / "down" / "kubeconfig"), server.start())
    try:
        create_daemonset(kubeconfig, "podwall-system", "podwall-agent")
        watcher = run_watcher(kubeconfig, "podwall-system", "podwall-agent")
        wait_for(works(watcher), what="the first answer about the DaemonSet")
    finally:
        server.stop()
    err = watcher.stop()
    assert watcher.installed(), err
    assert "API server unreachable" in err and "stays installed (fail safe)" in err, err


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_api_never_reachable_keeps_podwall_and_says_so_once(
    tmp_path: Path, run_watcher: Callable[[str, str, str], Watcher]
) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    kubeconfig = write_kubeconfig(str(tmp_path / "nowhere" / "kubeconfig"), url)
    watcher = run_watcher(kubeconfig, "podwall-system", "podwall-agent")
    wait_for(lambda: any("(retrying)" in line for line in watcher.lines), what="a failed probe")
    time.sleep(1.0)  # several watch rounds: the probe backs off, the log does not repeat
    err = watcher.stop()
    assert watcher.installed(), err
    retries = [line for line in watcher.lines if "removal check:" in line]
    assert len(retries) == 1, err
    assert "stays installed (fail safe)" in err, err


def test_kubectl_sees_the_daemonsets_the_double_serves(
    apiserver: ApiServerHandle, kubectl: Any
) -> None:
    """The double's apps/v1 DaemonSets (added for this check) work with kubectl too."""
    create_daemonset(apiserver.kubeconfig, "pw-kubectl", "podwall-agent")
    listed = kubectl.json("get", "daemonsets", "-n", "pw-kubectl")
    assert [d["metadata"]["name"] for d in listed["items"]] == ["podwall-agent"]
    kubectl("delete", "ds", "-n", "pw-kubectl", "podwall-agent")
    assert kubectl.json("get", "ds", "-n", "pw-kubectl")["items"] == []
