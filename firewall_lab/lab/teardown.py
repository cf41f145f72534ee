"""``podwall lab down``: remove everything a lab made, also after a crash.

Stops the lab process (SIGTERM: it deletes its pods through CNI DEL and its
namespaces), then sweeps whatever is left, whatever state the lab is in:
processes recorded in the state file (only when their command line still
names this lab), every recorded network namespace and every namespace with
the lab's prefix, and the files of ``DIR`` (the folder itself when ``up``
created it).  Idempotent; touches nothing that is not the lab's.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time

from firewall_lab import netns
from firewall_lab.lab import state

STOP_TIMEOUT = 30.0
LAB_FILES = ("kubeconfig", "pods.json", "lab.log", "nodes", "cache", state.STATE_NAME)


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def ours(pid: int, marker: str) -> bool:
    """Whether ``pid`` is alive and its command line contains ``marker``."""
    return bool(pid) and marker in cmdline(pid)


def stop_process(pid: int, marker: str, *, timeout: float) -> None:
    """SIGTERM, wait, then SIGKILL ``pid`` if it is still ours."""
    if not ours(pid, marker):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and ours(pid, marker):
        _reap(pid)
        time.sleep(0.05)
    if ours(pid, marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _reap(pid)


def _reap(pid: int) -> None:
    """Collect ``pid`` if it is our child (``up`` in the same process)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def lab_namespaces(prefix: str) -> list[str]:
    try:
        return sorted(name for name in os.listdir(netns.NETNS_DIR) if name.startswith(prefix))
    except FileNotFoundError:
        return []


def down(directory: str) -> list[str]:
    """Tear the lab in ``directory`` down; returns what was removed (for the CLI)."""
    directory = os.path.abspath(directory)
    recorded = state.load(directory)
    layout = recorded.layout(directory)
    removed: list[str] = []
    daemon = recorded.pids.get("lab", 0)
    if ours(daemon, directory):
        stop_process(daemon, directory, timeout=STOP_TIMEOUT)
        removed.append(f"process lab ({daemon})")
    for role, pid in recorded.pids.items():
        marker = os.path.join(directory, "nodes", role.partition("/")[2])
        if role != "lab" and ours(pid, marker):
            stop_process(pid, marker, timeout=5)
            removed.append(f"process {role} ({pid})")
    leftovers = list(dict.fromkeys(recorded.netns + lab_namespaces(layout.netns_prefix)))
    for name in reversed(leftovers):
        if netns.exists(name):
            netns.delete(name)
            removed.append(f"netns {name}")
    if recorded.dir_created:
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(f"folder {directory}")
    else:
        for name in LAB_FILES:
            path = os.path.join(directory, name)
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            elif os.path.lexists(path):
                os.unlink(path)
    return removed
