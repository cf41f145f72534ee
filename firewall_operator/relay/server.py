"""``podwall relay``: one list+watch of the cluster's pods, served slim to many agents.

With N agents each watching every pod, every pod change costs the API server
N watch events of a full Pod (docs/scale.md).  A relay (a Deployment behind
a Service, one replica per few hundred nodes) watches pods once with the
agent's own code (``watching.KindWatch`` into a ``store.RelayStore``) and
serves ``/api/v1/pods`` to agents the way the API server does, so the agent's
``watching`` needs nothing new (``podwall agent --pods-from URL``):

* LIST: every slim pod in one body, with the relay's resourceVersion (the
  API server's: agents can move between relays and resume where they were).
* WATCH from a resourceVersion: the history after it, then changes as they
  come, each encoded once for all agents; a bookmark every ``bookmark``
  seconds and before ``timeoutSeconds`` ends the watch; 410 Gone when the
  version left the history; an agent that does not keep up is cut off.
* ``/healthz``: 200 once the relay has listed and its watch is current.

Changes that do not touch the slim copy are not sent at all.  The relay
holds no secrets and writes nothing; TLS and client authentication are not
done yet (run it where only nodes can reach it, see docs/scale.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from dataclasses import dataclass

import kopf
from aiohttp import web

from firewall_operator.agent import heap, main, watching
from firewall_operator.agent.kubeapi import KubeApi
from firewall_operator.relay.store import RelayStore

log = logging.getLogger("podwall.relay")
PODS = "/api/v1/pods"
USER_AGENT = "podwall-relay"
BACKLOG = 20_000  # event lines an agent may fall behind by before it is cut off


@dataclass(frozen=True)
class RelayConfig:
    kubeconfig: str | None
    host: str = "0.0.0.0"
    port: int = 9103
    stall: float = 12.0
    bookmark: float = 5.0
    history: int = 200_000


class Relay:
    """The relay's store, its watch of the API server and its HTTP face."""

    def __init__(self, cfg: RelayConfig) -> None:
        self.cfg = cfg
        self.store = RelayStore(history=cfg.history)
        self.watchers = 0
        self.sent = 0  # event lines written to agents
        self.watch: watching.KindWatch | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(PODS, self.pods)
        app.router.add_get("/healthz", self.health)
        app.router.add_get("/_stats", self.stats)
        return app

    def healthy(self) -> bool:
        state = self.watch.state if self.watch is not None else None
        return self.store.listed and state is not None and state.behind_since is None

    async def health(self, request: web.Request) -> web.Response:
        ok = self.healthy()
        return web.Response(text="ok" if ok else "not ready", status=200 if ok else 503)

    async def stats(self, request: web.Request) -> web.Response:
        found = {"watchers": self.watchers, "sent": self.sent, "pods": len(self.store.pods),
                 "dropped": self.store.dropped, "version": self.store.version}  # fmt: skip
        return web.json_response(found)

    async def pods(self, request: web.Request) -> web.StreamResponse:
        if not self.store.listed:
            return web.json_response({"kind": "Status", "code": 503}, status=503)
        if request.query.get("watch") not in ("true", "1"):
            return web.Response(body=self.store.listing(), content_type="application/json")
        try:
            since = int(request.query.get("resourceVersion") or self.store.version)
            timeout = float(request.query.get("timeoutSeconds") or 300)
        except ValueError:
            return web.json_response({"kind": "Status", "code": 400}, status=400)
        return await self._watch(request, since, timeout)

    async def _watch(self, request: web.Request, since: int, timeout: float) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        backlog = self.store.since(since)
        if backlog is None:
            gone = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}
            await response.write(json.dumps({"type": "ERROR", "object": gone}).encode() + b"\n")
            return response
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.store.listeners.add(queue.put_nowait)
        self.watchers += 1
        try:
            await self._stream(response, backlog, queue, time.monotonic() + timeout)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.store.listeners.discard(queue.put_nowait)
            self.watchers -= 1
        return response

    async def _stream(
        self,
        response: web.StreamResponse,
        lines: list[bytes],
        queue: asyncio.Queue[bytes],
        end: float,
    ) -> None:
        while True:
            if lines:
                await response.write(b"".join(lines))
                self.sent += len(lines)
            left = end - time.monotonic()
            if left <= 0 or queue.qsize() > BACKLOG:
                await response.write(self.store.bookmark())
                return
            try:
                first = await asyncio.wait_for(queue.get(), min(self.cfg.bookmark, left))
            except TimeoutError:
                lines = [self.store.bookmark()]
                continue
            lines = [first]
            while not queue.empty():
                lines.append(queue.get_nowait())

    async def run(self, info: kopf.ConnectionInfo) -> None:
        api = KubeApi(info, dead_after=self.cfg.stall, user_agent=USER_AGENT)
        self.watch = watching.KindWatch(
            api, self.store, "pods", PODS, stall=self.cfg.stall, page=500,
            on_change=lambda: None, on_state=lambda state: None, on_swept=lambda kind, keys: None,
        )  # fmt: skip
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self.cfg.host, self.cfg.port).start()
        log.info("relay serving %s on %s:%d", PODS, self.cfg.host, self.cfg.port)
        try:
            await self.watch.run()
        finally:
            await runner.cleanup()
            await api.close()


def run(args: argparse.Namespace) -> int:
    """``podwall relay``: serve until SIGTERM/SIGINT; 0 on a clean stop."""
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    heap.tune()
    cfg = RelayConfig(
        kubeconfig=args.kubeconfig,
        host=args.host,
        port=args.port,
        stall=max(args.watch_stall_seconds, 3.0),
        bookmark=args.bookmark_seconds,
    )
    info = main.login(cfg.kubeconfig, kopf.OperatorSettings())
    if info is None:
        print("podwall relay: no kubeconfig and no service account to log in with", file=sys.stderr)
        return 1

    async def serve() -> None:
        task = asyncio.create_task(Relay(cfg).run(info))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(serve())
    return 0
