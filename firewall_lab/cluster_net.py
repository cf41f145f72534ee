"""Reach a TCP service of this network namespace from inside node namespaces.

The API server double listens on ``127.0.0.1`` in the namespace it was started
in (the root one); an agent running inside a node network namespace cannot
reach that address.  ``Forwarder`` fixes it without touching the root
namespace's links or tables: for each node namespace it opens a listening
socket *inside* that namespace (on the node's own ``127.0.0.1``, same port as
the target by default) and splices every connection to the target.  So one
kubeconfig (``http://127.0.0.1:PORT``) works in the root namespace and in
every node namespace alike.

* ``listening_socket(netns_name, host=..., port=...)``: a bound, listening TCP
  socket created inside a named namespace (a short-lived thread enters it; the
  socket keeps its namespace).  Usable by any server (``aiohttp.web.SockSite``).
* ``Forwarder(target)``: ``start()``, ``expose(netns_name, port=None) -> port``,
  ``conceal(netns_name)``, ``stop()``; a background thread runs the splices.
  ``stop()`` closes open connections and lets their splices end by themselves
  (a cancelled connection handler makes Python 3.11's asyncio print a
  ``CancelledError`` traceback).
* ``python -m firewall_lab.cluster_net --target 127.0.0.1:P --netns A ...``:
  the same as a foreground process (SIGTERM stops it), for long-lived labs.

This module moves bytes only: it knows nothing about HTTP or Kubernetes.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import signal
import socket
import sys
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from firewall_lab import netns

CHUNK = 65536
T = TypeVar("T")


class ClusterNetError(Exception):
    """A socket could not be opened in a namespace, or the forwarder is not running."""


def listening_socket(
    netns_name: str, *, host: str = "127.0.0.1", port: int = 0, backlog: int = 512
) -> socket.socket:
    """A listening TCP socket bound to ``host:port`` inside netns ``netns_name``."""
    made: concurrent.futures.Future[socket.socket] = concurrent.futures.Future()

    def inside() -> None:
        try:
            netns.enter(netns_name)  # this thread only
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(backlog)
            sock.setblocking(False)
            made.set_result(sock)
        except BaseException as exc:
            made.set_exception(exc)

    thread = threading.Thread(target=inside, name=f"listen-in-{netns_name}", daemon=True)
    thread.start()
    thread.join()
    try:
        return made.result()
    except (OSError, netns.NetnsError) as exc:
        raise ClusterNetError(f"cannot listen on {host}:{port} in {netns_name}: {exc}") from exc


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(CHUNK):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()


class Forwarder:
    """Splice connections made inside node namespaces to ``target`` (see module doc)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: dict[str, asyncio.Server] = {}
        self._open: set[asyncio.StreamWriter] = set()  # both ends of every splice
        self._splices: set[asyncio.Task[Any]] = set()

    def start(self) -> Forwarder:
        ready = threading.Event()

        def run() -> None:
            self.loop = asyncio.new_event_loop()
            self.loop.call_soon(ready.set)
            self.loop.run_forever()
            self.loop.close()

        self._thread = threading.Thread(target=run, name="podwall-forwarder", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def __enter__(self) -> Forwarder:
        return self.start() if self.loop is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _splice(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._splices.add(task)
        self._open.add(writer)
        up_writer: asyncio.StreamWriter | None = None
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
            self._open.add(up_writer)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except OSError:
            pass
        finally:
            for side in (writer, up_writer):
                if side is not None:
                    side.close()
                    self._open.discard(side)
            if task is not None:
                self._splices.discard(task)

    def _submit(self, coro: Coroutine[Any, Any, T]) -> T:
        if self.loop is None:
            coro.close()
            raise ClusterNetError("the forwarder is not running")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def expose(self, netns_name: str, *, port: int | None = None) -> int:
        """Listen on ``127.0.0.1:port`` inside ``netns_name`` (default: the
        target's port); returns the port.  Exposing a namespace twice is a no-op."""
        if netns_name in self._servers:
            return int(self._servers[netns_name].sockets[0].getsockname()[1])
        sock = listening_socket(netns_name, port=self.target[1] if port is None else port)

        async def serve() -> asyncio.Server:
            return await asyncio.start_server(self._splice, sock=sock)

        server = self._submit(serve())
        self._servers[netns_name] = server
        return int(sock.getsockname()[1])

    def conceal(self, netns_name: str) -> None:
        """Stop listening inside ``netns_name`` (open connections carry on)."""
        server = self._servers.pop(netns_name, None)
        if server is not None and self.loop is not None:
            self.loop.call_soon_threadsafe(server.close)

    def stop(self) -> None:
        for name in list(self._servers):
            self.conceal(name)
        if self.loop is not None and self._thread is not None:

            async def finish() -> None:  # end open splices before the loop stops
                for side in list(self._open):
                    side.close()  # both pipes of a splice then see the end
                if self._splices:
                    _, stuck = await asyncio.wait(set(self._splices), timeout=5)
                    for task in stuck:
                        task.cancel()

            with contextlib.suppress(Exception):
                self._submit(finish())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
        self.loop, self._thread = None, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m firewall_lab.cluster_net")
    parser.add_argument("--target", required=True, help="HOST:PORT in this namespace")
    parser.add_argument("--netns", action="append", default=[], help="node namespace (repeat)")
    args = parser.parse_args(argv)
    host, _, port = args.target.rpartition(":")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with Forwarder((host.strip("[]"), int(port))) as forwarder:
        try:
            for name in args.netns:
                forwarder.expose(name)
        except ClusterNetError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print("ready", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
