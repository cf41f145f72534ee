"""Running the API server double: in a thread, in the foreground, or as a process.

``ApiServer`` owns one event loop (in a background thread, or the caller's via
``serve_forever``), the store (loaded from and saved to ``state_file``,
debounced and atomic) and the aiohttp site on 127.0.0.1.  ``write_kubeconfig``
writes a kubeconfig for a server URL; ``spawn`` starts ``python -m
firewall_lab.apiserver`` as a child process and waits for its URL.  This
module wires parts together; it holds no object semantics.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import yaml
from aiohttp import web

from firewall_lab.apiserver import handlers, storage
from firewall_lab.apiserver.objects import Api
from firewall_lab.apiserver.resources import Registry

T = TypeVar("T")
SAVE_DELAY = 0.2
DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class ApiServerError(Exception):
    """The server could not start."""


def write_kubeconfig(path: str, url: str, *, context: str = "podwall-lab") -> str:
    """Write a kubeconfig pointing at ``url`` (no auth; any token is accepted)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": url}}],
        "users": [{"name": context, "user": {"token": "podwall-lab"}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
        "current-context": context,
    }
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as handle:
        yaml.safe_dump(config, handle)
    os.replace(tmp, path)
    return path


class ApiServer:
    """One API server double; ``start()`` runs it on a background thread."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        state_file: str | None = None,
        save: bool = True,
        history_size: int = 10_000,
        bookmark_interval: float = 60.0,
    ) -> None:
        self.host, self.port, self.state_file, self.saving = host, port, state_file, save
        self.store = storage.Store(history_size=history_size)
        if state_file:
            saved = storage.load_file(state_file)
            if saved is not None:
                self.store.restore(saved)
        self.state = handlers.ServerState(
            Api(self.store, Registry()), bookmark_interval=bookmark_interval
        )
        if not self.store.items("/namespaces"):
            self._seed()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._save_pending = False

    def _seed(self) -> None:
        """The namespaces every cluster starts with."""
        api = self.state.api
        namespaces = api.registry.lookup("", "v1", "namespaces")
        assert namespaces is not None
        for name in DEFAULT_NAMESPACES:
            api.create(namespaces, "", {"metadata": {"name": name}})

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def _start_site(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.state.address = f"{self.host}:{self.port}"
        self.store.on_change = self._schedule_save
        self._runner = web.AppRunner(
            handlers.make_app(self.state), access_log=None, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]
        self.state.address = f"{self.host}:{self.port}"

    async def _stop_site(self) -> None:
        self.state.stopping.set()
        for stream in list(self.state.streams):
            stream.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        self.save()

    def _schedule_save(self) -> None:
        if not self.saving:
            return
        if self.state_file and not self._save_pending and self.loop is not None:
            self._save_pending = True
            self.loop.call_later(SAVE_DELAY, self.save)

    def save(self) -> None:
        """Write the state file now (no-op without one)."""
        self._save_pending = False
        if self.state_file and self.saving:
            storage.save_file(self.state_file, self.store.snapshot())

    def start(self, *, timeout: float = 10.0) -> str:
        """Start on a background thread; returns the URL once it listens."""
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()

        def run() -> None:
            loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(self._start_site())
            except BaseException as exc:
                ready.set_exception(exc)
                loop.close()
                return
            ready.set_result(None)
            loop.run_forever()
            loop.run_until_complete(self._stop_site())
            loop.close()

        self._thread = threading.Thread(target=run, name="podwall-apiserver", daemon=True)
        self._thread.start()
        try:
            ready.result(timeout)
        except (OSError, concurrent.futures.TimeoutError) as exc:
            raise ApiServerError(f"API server did not start on {self.url}: {exc}") from exc
        return self.url

    def call(self, func: Callable[[], T], *, timeout: float = 10.0) -> T:
        """Run ``func`` on the server's loop thread and return its result."""
        if self.loop is None:
            raise ApiServerError("the API server is not running")
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(func())
            except BaseException as exc:
                future.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return future.result(timeout)

    def expire_watches(self) -> None:
        """Test hook: compact the history and end open watches with 410 Expired."""
        self.call(self.state.expire_watches)

    def freeze_watches(self, frozen: bool = True) -> None:
        """Test hook: watches, open and new, send nothing and never end, until
        ``freeze_watches(False)``; other requests are answered."""
        self.call(lambda: self.state.freeze_watches(frozen))

    def stop(self) -> None:
        if self.loop is not None and self._thread is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self._thread = None

    def serve_forever(self, *, on_ready: Callable[[str], None] | None = None) -> None:
        """Run in the foreground until SIGTERM or SIGINT."""

        async def main() -> None:
            await self._start_site()
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            if on_ready is not None:
                on_ready(self.url)
            await stop.wait()
            await self._stop_site()

        asyncio.run(main())


def spawn(
    *,
    port: int = 0,
    state_file: str | None = None,
    kubeconfig: str | None = None,
    extra: list[str] | None = None,
    timeout: float = 20.0,
) -> tuple[subprocess.Popen[str], str]:
    """Start ``python -m firewall_lab.apiserver`` and return (process, URL)."""
    cmd = [sys.executable, "-m", "firewall_lab.apiserver", "--port", str(port)]
    if state_file:
        cmd += ["--state", state_file]
    if kubeconfig:
        cmd += ["--kubeconfig", kubeconfig]
    proc = subprocess.Popen(cmd + (extra or []), stdout=subprocess.PIPE, text=True)
    result: list[Any] = []
    reader = threading.Thread(
        target=lambda: result.append(proc.stdout.readline() if proc.stdout else ""), daemon=True
    )
    reader.start()
    reader.join(timeout)
    line = result[0].strip() if result else ""
    if not line.startswith("http"):
        proc.kill()
        proc.wait()
        raise ApiServerError(f"API server process did not start (said {line!r})")
    return proc, line
