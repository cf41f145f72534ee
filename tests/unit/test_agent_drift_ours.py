"""The drift watch takes the agent's own nf_tables commits, from any of its
threads, for its own (NEWGEN names the committing thread, not the process)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

from firewall_operator.agent import node


def test_commits_of_any_own_thread_are_own_and_others_are_not() -> None:
    found: list[int] = []
    started, stop = threading.Event(), threading.Event()

    def worker() -> None:
        found.append(threading.get_native_id())
        started.set()
        stop.wait(5)

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        assert started.wait(5)
        assert found[0] != os.getpid()
        assert node._ours(os.getpid(), os.getpid())
        assert node._ours(found[0], os.getpid()), "a worker thread's commit is the agent's"
    finally:
        stop.set()
        thread.join()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        assert not node._ours(other.pid, os.getpid())
    finally:
        other.kill()
        other.wait()
