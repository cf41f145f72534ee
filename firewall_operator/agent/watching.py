"""The agent's own list+watch of every watched kind: one LIST per kind, then watches.

One ``KindWatch`` task per kind (the table is ``handlers.RESOURCES``):

* **list**: LIST pages of ``page`` objects straight into the slim cache
  (``ClusterCache.relist_item``), then the sweep (``relist_finish``): entries
  the list lacked and that are not newer than it are dropped.  The first list
  of every kind sets ``Watches.ready``; at start-up each kind is listed once.
* **watch** from the resourceVersion of the LIST's first page (the other
  pages come meanwhile, in a task of their own, so changes never wait behind
  a big LIST), with bookmarks, for at most ``timeout`` seconds (server side,
  ``timeoutSeconds``; kube-apiserver sends a bookmark 2 s before it ends a
  watch, so a quiet watch still hears from the server every ``timeout - 2``
  seconds).  Events go to ``ClusterCache.observe``;
  events and bookmarks move the version to resume from.
* a kind in ``optional`` (the upstream policy kinds) whose LIST answers 404
  (no CRD) counts as an empty list, is not watched, and is listed again every
  ``MISSING_RETRY`` seconds;
* what ends a watch decides what follows: a clean end (the server's timeout)
  or a broken connection → watch again from the last version; ``410 Gone`` →
  list again; **nothing heard for ``stall`` seconds** (no event, no bookmark:
  a stopped server, a half-open connection; or the kernel's keepalive and
  ``TCP_USER_TIMEOUT`` gave up, see ``kubeapi.keepalive_socket``) → the kind is
  *behind*; list again, with retries, and watch from there.

A kind is *behind* from the first failure until its LIST is done and the new
watch has brought something (an event or a bookmark); every change of that
goes to ``on_state`` (NodeFirewall status and metrics).
The agent learns about its re-lists because it makes them: no log wording or
kopf internal is involved.  Why not kopf's own watching: kopf hands each
object to a per-object worker (about 1 ms per object here, 20 times the
agent's own handling; 100k pods took minutes), it does not drop objects that
vanished across a re-list, and it shows handlers neither bookmarks nor where
a listing starts and ends, so stalls and sweeps cannot be seen through it
(docs/scale.md has the measurements).  Never touches the kernel.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from firewall_operator.agent import heap
from firewall_operator.agent.cache import ClusterCache, Key, Kind
from firewall_operator.agent.errors import KubeApiError, WatchStalledError
from firewall_operator.agent.kubeapi import KubeApi, WatchBody

log = logging.getLogger(__name__)
CHANGES = ("ADDED", "MODIFIED", "DELETED")
RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0)  # between failed lists/watches; then the last one
MISSING_RETRY = 30.0  # seconds between LISTs of an optional kind whose CRD is missing
BIG_LIST = 10_000  # objects: after a LIST this big, give freed memory back


class Sink(Protocol):
    """Where listed and watched objects go (``ClusterCache``; the relay's store)."""

    def observe(self, kind: Kind, event_type: str | None, obj: Mapping[str, Any]) -> bool: ...
    def relist_item(self, kind: Kind, obj: Mapping[str, Any], present: set[Key]) -> bool: ...
    def relist_finish(self, kind: Kind, present: set[Key], list_version: str) -> list[Key]: ...


def collection_path(api_version: str, plural: str) -> str:
    """The cluster-wide collection of a kind (``v1`` → ``/api/v1/...``)."""
    prefix = "/api" if "/" not in api_version else "/apis"
    return f"{prefix}/{api_version}/{plural}"


class Expired(Exception):
    """The watch answered 410 Gone: its version left the server's history."""


@dataclass
class WatchState:
    """What the agent knows about one kind's watch (reported, never decided on)."""

    kind: Kind
    listings: int = 0  # LISTs since start (one at start-up)
    stalls: int = 0  # watches given up for silence
    behind_since: float | None = None  # wall time of the first failure; None: current
    reason: str = ""  # why it is behind

    @property
    def listed(self) -> bool:
        return self.listings > 0


class KindWatch:
    """List and watch one kind, for ever (see module doc)."""

    def __init__(
        self,
        api: KubeApi,
        cache: Sink,
        kind: Kind,
        path: str,
        *,
        stall: float,
        page: int,
        on_change: Callable[[], None],
        on_state: Callable[[WatchState], None],
        on_swept: Callable[[Kind, list[Key]], None],
        optional: bool = False,
    ) -> None:
        self.api, self.cache, self.kind, self.path = api, cache, kind, path
        self.optional, self.missing = optional, False
        self.stall, self.page = stall, page
        self.timeout = max(int(stall) - 2, 1)
        self.on_change, self.on_state, self.on_swept = on_change, on_state, on_swept
        self.state = WatchState(kind)
        self.version = ""  # where the next watch starts; "" → list first
        self.heard = False  # the open watch brought something (an event, a bookmark)
        self.lists_wanted = False  # a LIST was started and has not finished yet
        self.listing: asyncio.Task[None] | None = None

    async def run(self) -> None:
        failures = 0
        try:
            while True:
                try:
                    if not self.version:
                        self.version = await self.relist()
                    self.version = await self.watch(self.version)
                    failures = 0
                except Expired:
                    log.info("watch of %s expired (410): listing again", self.kind)
                    self.version = ""
                except WatchStalledError as exc:
                    self.state.stalls += 1
                    self._behind(f"no event or bookmark for {self.stall:.0f}s")
                    log.warning("watch of %s stalled, listing again: %s", self.kind, exc)
                    self.version = ""
                except KubeApiError as exc:
                    if self.optional and exc.status == 404:
                        await self._missing()
                        continue
                    self._behind(str(exc)[:200])
                    delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)]
                    failures += 1
                    log.warning("watch of %s failed (again in %.1fs): %s", self.kind, delay, exc)
                    await asyncio.sleep(delay)
        finally:
            if self.listing is not None:
                self.listing.cancel()

    async def _missing(self) -> None:
        """An optional kind without its CRD: as an empty list (which sweeps what
        a deleted CRD left behind), then a new LIST now and then."""
        if not self.missing:
            log.warning("no %s in this cluster (is its CRD installed?): none enforced", self.kind)
        self.missing = True
        swept = self.cache.relist_finish(self.kind, set(), "")
        if swept:
            self.on_swept(self.kind, swept)
            self.on_change()
        self.state.listings += 1
        self.on_state(self.state)
        self.version = ""
        await asyncio.sleep(MISSING_RETRY)

    async def relist(self) -> str:
        """Start a LIST (in the background; one still running is dropped) and
        return the version of its first page: the watch starts from there while
        the other pages come, so changes never wait behind a big list."""
        if self.listing is not None and not self.listing.done():
            self.listing.cancel()
        first: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.lists_wanted = True
        self.listing = asyncio.create_task(self._list_until_done(first), name=f"list {self.kind}")
        return await first

    async def _list_until_done(self, first: asyncio.Future[str]) -> None:
        failures = 0
        try:
            while True:
                try:
                    await self.list(first)
                    self.lists_wanted = False
                    self._maybe_current()
                    return
                except KubeApiError as exc:
                    if not first.done():
                        first.set_exception(exc)  # the watcher retries with a new list
                        return
                    delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)]
                    failures += 1
                    log.warning("list of %s failed (again in %.1fs): %s", self.kind, delay, exc)
                    await asyncio.sleep(delay)
        finally:
            if not first.done():  # never leave the watcher waiting
                first.set_exception(KubeApiError(f"LIST {self.path} stopped"))

    async def list(self, first: asyncio.Future[str] | None = None) -> str:
        """One LIST of the kind into the cache, then the sweep; returns its version
        (and hands the first page's version to ``first``)."""
        present: set[Key] = set()
        version, changed, count = "", False, 0
        async for items, page_version in self.api.list_pages(self.path, limit=self.page):
            version = page_version
            if first is not None and not first.done():
                first.set_result(version or "0")  # no version named: watch from "any"
            for obj in items:
                changed = self.cache.relist_item(self.kind, obj, present) or changed
            count += len(items)
            del items
            await asyncio.sleep(0)  # let the watches and the reconciler run between pages
        swept = self.cache.relist_finish(self.kind, present, version)
        self.state.listings += 1
        self.missing = False
        log.info(
            "listed %s: %d objects, %d swept (listing %d)",
            self.kind,
            count,
            len(swept),
            self.state.listings,
        )
        if swept:
            log.info("swept %d %s that vanished across a re-list", len(swept), self.kind)
            self.on_swept(self.kind, swept)
        if changed or swept:
            self.on_change()
        if count >= BIG_LIST:
            heap.release()
        if self.state.listings == 1:
            self.on_state(self.state)
        return version

    async def watch(self, version: str) -> str:
        """One watch request from ``version``; returns the version to resume from."""
        params = {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "resourceVersion": version,
            "timeoutSeconds": str(self.timeout),
        }
        async with self.api.open_watch(self.path, params, stall=self.stall) as body:
            try:
                return await self._read(body, version)
            finally:
                self.heard = False

    async def _read(self, body: WatchBody, version: str) -> str:
        tail = b""
        while chunk := await body.read():
            if not self.heard:
                self.heard = True
                self._maybe_current()
            if b"\n" not in chunk:
                tail += chunk
                continue
            lines = (tail + chunk).split(b"\n")
            tail = lines.pop()
            for line in lines:
                if line.strip():
                    version = self._event(line, version)
        return version

    def _event(self, line: bytes, version: str) -> str:
        try:
            event = json.loads(line)
            kind, obj = event["type"], event["object"]
        except (ValueError, KeyError, TypeError) as exc:
            raise KubeApiError(f"WATCH {self.path}: undecodable event {line[:200]!r}") from exc
        if kind == "ERROR":
            code = obj.get("code") if isinstance(obj, dict) else None
            if code == 410:
                raise Expired()
            message = obj.get("message") if isinstance(obj, dict) else obj
            raise KubeApiError(f"WATCH {self.path}: error event: {message}", status=code or 0)
        if not isinstance(obj, dict):
            return version
        found = (obj.get("metadata") or {}).get("resourceVersion")
        if kind in CHANGES and self.cache.observe(self.kind, kind, obj):
            self.on_change()
        return str(found) if found else version

    def _behind(self, reason: str) -> None:
        if self.state.behind_since is None:
            self.state.behind_since = time.time()
        self.state.reason = reason
        self.on_state(self.state)

    def _maybe_current(self) -> None:
        """Current again once the open watch brought something and no LIST is under way."""
        if not self.heard or self.lists_wanted:
            return
        if self.state.behind_since is not None:
            lag = time.time() - self.state.behind_since
            log.info("watch of %s is current again after %.1fs behind", self.kind, lag)
            self.state.behind_since, self.state.reason = None, ""
            self.on_state(self.state)


class Watches:
    """Every kind's ``KindWatch``; ``ready`` once each kind was listed."""

    def __init__(
        self,
        api: KubeApi,
        cache: ClusterCache,
        paths: Mapping[Kind, str],
        *,
        stall: float = 12.0,
        page: int = 500,
        on_change: Callable[[], None],
        on_state: Callable[[WatchState], None] = lambda state: None,
        on_swept: Callable[[Kind, list[Key]], None] = lambda kind, keys: None,
        ready: asyncio.Event | None = None,
        sources: Mapping[Kind, KubeApi] | None = None,
        optional: Collection[Kind] = (),
    ) -> None:
        self.ready = ready or asyncio.Event()
        self.started = time.monotonic()
        self._on_state = on_state
        self.kinds = {
            kind: KindWatch(
                (sources or {}).get(kind, api),
                cache,
                kind,
                path,
                stall=stall,
                page=page,
                on_change=on_change,
                on_state=self._state_changed,
                on_swept=on_swept,
                optional=kind in optional,
            )
            for kind, path in paths.items()
        }

    def _state_changed(self, state: WatchState) -> None:
        if not self.ready.is_set() and all(w.state.listed for w in self.kinds.values()):
            log.info("every kind listed in %.1fs", time.monotonic() - self.started)
            self.ready.set()
        self._on_state(state)

    def states(self) -> list[WatchState]:
        return [watch.state for watch in self.kinds.values()]

    def behind(self) -> list[Kind]:
        """Kinds not listed yet or whose watch is being re-established."""
        return [s.kind for s in self.states() if not s.listed or s.behind_since is not None]

    async def run(self) -> None:
        tasks = [asyncio.create_task(w.run(), name=f"watch {k}") for k, w in self.kinds.items()]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
