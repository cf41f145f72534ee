"""``<runDir>/agent.sock``: the plugin's fast path (protocol in ``firewall_plugin.agent_client``).

A CNI ADD sends one ``{"op": "program", ...}`` line once the endpoint record
is written; we wait (bounded) until the cache knows the pod, ask the
reconciler for an urgent sync that starts after the request, and answer
``{"ok": true}`` only when that sync succeeded and compiled the pod with its
real policy (not the unknown-pod default).  Otherwise ``{"ok": false,
"error": ...}``: the pod keeps ``podDefault`` and a later sync programs it.
The server never writes the kernel itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from typing import Any

from firewall_operator.agent.reconcile import Reconciler
from firewall_plugin import agent_client, endpoints

log = logging.getLogger(__name__)
MAX_LINE = 65536
POD_WAIT = 10.0  # seconds to wait for the pod to appear in the cache
SYNC_WAIT = 30.0  # the plugin gives up earlier (agentTimeoutMs); we just stop waiting


def _reply(ok: bool, error: str = "") -> bytes:
    body: dict[str, Any] = {"ok": True} if ok else {"ok": False, "error": error}
    return (json.dumps(body) + "\n").encode()


class SocketServer:
    """Serves the fast path for one reconciler (``start``/``stop``)."""

    def __init__(self, reconciler: Reconciler, *, run_dir: str) -> None:
        self.reconciler = reconciler
        self.path = agent_client.socket_path(run_dir)
        self._server: asyncio.AbstractServer | None = None
        self.served = 0

    async def start(self) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # a stale socket of a previous agent
        self._server = await asyncio.start_unix_server(self._handle, path=self.path, limit=MAX_LINE)
        os.chmod(self.path, 0o600)

    async def stop(self) -> None:
        """Stop listening and remove the socket: plugins stop waiting for us."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            answer = await self.answer(line)
            writer.write(answer)
            await writer.drain()
        except (OSError, TimeoutError, ValueError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def answer(self, line: bytes) -> bytes:
        try:
            request = json.loads(line)
        except ValueError:
            return _reply(False, "request is not JSON")
        if not isinstance(request, dict) or request.get("op") != "program":
            return _reply(
                False, f"unknown op {request.get('op') if isinstance(request, dict) else None!r}"
            )
        self.served += 1
        return await self._program(request)

    async def _program(self, request: dict[str, Any]) -> bytes:
        namespace = str(request.get("podNamespace") or "")
        name, uid = str(request.get("podName") or ""), str(request.get("podUID") or "")
        key = endpoints.record_stem(str(request.get("containerID")), str(request.get("ifName")))
        if not await self._pod_known(namespace, name, uid):
            return _reply(False, f"pod {namespace}/{name} not known to the agent yet")
        ticket = self.reconciler.mark(urgent=True)
        report = await self.reconciler.wait_synced(ticket, SYNC_WAIT)
        if report is None:
            return _reply(False, "sync did not finish in time")
        if not report.ok:
            return _reply(False, f"sync failed: {report.error}")
        if key in report.unmatched:
            return _reply(False, f"endpoint {key} did not match pod {namespace}/{name}")
        return _reply(True)

    async def _pod_known(self, namespace: str, name: str, uid: str) -> bool:
        deadline = time.monotonic() + POD_WAIT
        while True:
            pod = self.reconciler.cache.pod(namespace, name)
            same = pod is not None and (not uid or not pod.uid or pod.uid == uid)
            if same and self.reconciler.ready.is_set():
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
