"""Client of the agent's fast path: ask it to program a new pod right now.

Protocol (the agent serves it on ``<runDir>/agent.sock``, a Unix stream socket):

* The plugin connects and sends ONE line, a JSON object ended by ``\\n``::

      {"op": "program", "containerID": "...", "ifName": "eth0",
       "podNamespace": "ns", "podName": "pod", "podUID": "..."}

  The endpoint record ``<stateDir>/endpoints/<containerID>_<ifName>.json``
  is already written when the request is sent.
* The agent programs the pod's chains (taking the podwall lock itself, so the
  plugin asks OUTSIDE the lock) and answers ONE line: ``{"ok": true}`` once the
  pod's rules are in the kernel, or ``{"ok": false, "error": "..."}``.  Then
  either side closes the connection.  Unknown ``op``: ``{"ok": false, ...}``.
* The plugin waits at most ``agentTimeoutMs`` for the whole exchange.  When the
  socket does not exist it does not wait at all.  On timeout, refusal or an
  ``ok: false`` answer the pod keeps ``podDefault`` until the agent reads the
  record on its own; ADD still succeeds.

Never raises: every failure is returned as text for one stderr line.
"""

from __future__ import annotations

import os
import time

from firewall_plugin import jsoncodec
from firewall_plugin.values import Frozen, init_fields

SOCKET_NAME = "agent.sock"
MAX_REPLY = 65536


class Answer(Frozen):
    """What came of asking the agent: ``asked`` false when no agent listens."""

    __slots__ = ("asked", "detail", "ok")
    asked: bool
    ok: bool
    detail: str

    def __init__(self, asked: bool, ok: bool, detail: str = "") -> None:
        init_fields(self, asked, ok, detail)


def socket_path(run_dir: str) -> str:
    return os.path.join(run_dir, SOCKET_NAME)


def request_line(
    *, container_id: str, ifname: str, pod_namespace: str, pod_name: str, pod_uid: str
) -> bytes:
    """The one request line (JSON + newline)."""
    message = {
        "op": "program",
        "containerID": container_id,
        "ifName": ifname,
        "podNamespace": pod_namespace,
        "podName": pod_name,
        "podUID": pod_uid,
    }
    return (jsoncodec.dumps(message, compact=True) + "\n").encode()


def _exchange(path: str, line: bytes, deadline: float) -> bytes:
    import socket  # only when an agent listens: ~1.5 ms of start-up otherwise

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        sock.connect(path)
        sock.sendall(line)
        reply = b""
        while b"\n" not in reply and len(reply) < MAX_REPLY:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
        return reply.split(b"\n", 1)[0]


def program(run_dir: str, *, timeout_ms: int, line: bytes) -> Answer:
    """Send ``line`` to the agent and wait for its answer (see module doc)."""
    path = socket_path(run_dir)
    if timeout_ms <= 0 or not os.path.exists(path):
        return Answer(asked=False, ok=False, detail="no agent socket")
    deadline = time.monotonic() + timeout_ms / 1000
    try:
        reply = _exchange(path, line, deadline)
    except TimeoutError:
        return Answer(asked=True, ok=False, detail=f"agent did not answer in {timeout_ms} ms")
    except OSError as exc:
        return Answer(asked=True, ok=False, detail=f"agent unreachable: {exc}")
    try:
        answer = jsoncodec.loads(reply.decode())
    except ValueError:
        return Answer(asked=True, ok=False, detail=f"agent answered {reply[:200]!r}")
    if isinstance(answer, dict) and answer.get("ok") is True:
        return Answer(asked=True, ok=True)
    error = answer.get("error", "") if isinstance(answer, dict) else ""
    return Answer(asked=True, ok=False, detail=f"agent refused: {error or reply[:200]!r}")
