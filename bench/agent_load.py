"""Load and probes for ``bench_agent``: the API client, the kernel poller, pod churn.

* ``request(url, method, path, body)``: one JSON request to the API double.
* ``Poller(netns)``: a process inside the node netns that runs a command
  until it succeeds (its stdout holding ``want``, or exit status 0) and
  reports the wall time it did: when a change reached the kernel.
* ``Churn(url, ...)``: a thread that keeps changing remote pods at ``rate``
  per second (label patches, deletes and re-creates), as a busy cluster does.
* ``percentiles``: p50/p99/max of seconds, in ms.
* ``listings(url)``: the LISTs each agent made per collection, from the API
  double's request log (first pages only: a paged LIST counts once).
Benchmark support only.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from typing import Any

POLLER = r"""
import json, subprocess, sys, time
for line in sys.stdin:
    spec = json.loads(line)
    while True:
        done = subprocess.run(spec["argv"], capture_output=True, text=True)
        want = spec.get("want")
        if (want in done.stdout) if want is not None else done.returncode == 0:
            print(time.time(), flush=True)
            break
        time.sleep(0.005)
"""


def request(url: str, method: str, path: str, body: Any = None, ctype: str = "") -> Any:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": ctype or "application/json"}
    req = urllib.request.Request(url + path, data=data, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=120) as answer:
        return json.loads(answer.read() or b"{}")


class Poller:
    """Waits inside a netns until a command shows a change (see module doc)."""

    def __init__(self, netns: str) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-c", POLLER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def expect(self, argv: list[str], want: str | None = None) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"argv": argv, "want": want}) + "\n")
        self.proc.stdin.flush()

    def seen(self) -> float:
        """Wall time the last expected change was seen."""
        assert self.proc.stdout is not None
        return float(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


class Churn(threading.Thread):
    """Changes remote pods at ``rate`` per second until ``stop()``: two label
    patches for every delete + re-create (same name, new UID)."""

    def __init__(self, url: str, pods: list[dict[str, Any]], *, rate: float, seed: int = 7):
        super().__init__(name="churn", daemon=True)
        self.url, self.pods, self.rate = url, pods, rate
        self.random = random.Random(seed)
        self.done = threading.Event()
        self.changes = 0

    def run(self) -> None:
        start, step = time.monotonic(), 0
        while not self.done.is_set():
            pod = self.pods[self.random.randrange(len(self.pods))]
            meta = pod["metadata"]
            path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
            try:
                if step % 3 == 2:
                    request(self.url, "DELETE", path)
                    fresh = json.loads(json.dumps(pod))
                    for key in ("uid", "resourceVersion", "creationTimestamp"):
                        fresh["metadata"].pop(key, None)
                    request(self.url, "POST", path.rsplit("/", 1)[0], fresh)
                else:
                    patch = {"metadata": {"labels": {"churn": str(step)}}}
                    request(self.url, "PATCH", path, patch, "application/merge-patch+json")
                self.changes += 1
            except OSError:
                pass  # a pod another step is re-creating; the next one goes on
            step += 1
            lag = start + step / self.rate - time.monotonic()
            if lag > 0:
                self.done.wait(lag)

    def stop(self) -> None:
        self.done.set()
        self.join(30)


def percentiles(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (
        f"p50 {statistics.median(ordered) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
        f"max {ordered[-1] * 1000:.0f} ms"
    )


def listings(url: str, *, agent: str = "podwall-agent") -> dict[str, int]:
    """First-page LISTs per collection path made by ``agent`` (by User-Agent)."""
    found: dict[str, int] = {}
    for entry in request(url, "GET", "/_podwall/requests")["items"]:
        query = urllib.parse.parse_qs(entry.get("query", ""))
        if entry["method"] != "GET" or agent not in entry.get("user_agent", ""):
            continue
        if "watch" in query or "continue" in query or "limit" not in query:
            continue
        found[entry["path"]] = found.get(entry["path"], 0) + 1
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
