"""The agent's own LISTs: priming the cache, and mark-and-sweep after kopf re-lists.

``Relister.prime()`` lists every watched kind once at start (pages of
``page`` objects, slim entries only) and then sets ``reconciler.ready``: the
first sync compiles a complete cluster, never a half-filled cache.  The
upstream kinds (``OPTIONAL``) may have no CRD: a 404 lists them as empty
(which also sweeps what a deleted CRD left behind), with one warning.

kopf re-lists a resource after its watch gets 410 Gone (and at start); the
objects of a list reach handlers as events of type ``None``, but kopf never
tells which objects vanished, and never drops them.  ``saw_listing(kind)``
notes that kopf listed: the handlers call it for ``None`` events, and
``watch_restarts`` (a filter on kopf's watching logger) for kopf's "Restarting
the watch-stream" record after a 410, which also covers re-lists that return
nothing.  Once quiet for ``quiet`` seconds, the relister runs its own
LIST of that kind and sweeps every cached object it lacks that is not newer
than that list (``ClusterCache.relist_finish``).  As a safety net every kind
is also re-listed every ``every`` seconds.  A LIST started after kopf's
listing began sees at least what kopf saw, so nothing kopf missed survives.
Never touches the kernel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence

from firewall_operator.agent.cache import (
    BASE_KINDS,
    KINDS,
    UPSTREAM_KINDS,
    ClusterCache,
    Key,
    Kind,
)
from firewall_operator.agent.errors import KubeApiError
from firewall_operator.agent.kubeapi import KubeApi

log = logging.getLogger(__name__)
PATHS: dict[Kind, str] = {
    "namespaces": "/api/v1/namespaces",
    "pods": "/api/v1/pods",
    "networkpolicies": "/apis/networking.k8s.io/v1/networkpolicies",
    "firewallrules": "/apis/podwall.io/v1alpha1/firewallrules",
    "nodes": "/api/v1/nodes",
    "clusternetworkpolicies": "/apis/policy.networking.k8s.io/v1alpha2/clusternetworkpolicies",
    "adminnetworkpolicies": "/apis/policy.networking.k8s.io/v1alpha1/adminnetworkpolicies",
    "baselineadminnetworkpolicies": (
        "/apis/policy.networking.k8s.io/v1alpha1/baselineadminnetworkpolicies"
    ),
}
#: kinds whose CRD may be missing: listed as empty then
OPTIONAL: frozenset[Kind] = frozenset(UPSTREAM_KINDS)


WATCH_LOGGER = "kopf._cogs.clients.watching"
RESTART_TEXT = "Restarting the watch-stream for "
PLURALS: dict[str, Kind] = {kind: kind for kind in KINDS}


class WatchRestarts(logging.Filter):
    """Turns kopf's (debug) record of a 410 watch restart into ``saw_listing``;
    drops debug records unless ``verbose`` (the logger is set to DEBUG for us)."""

    def __init__(self, notice: Callable[[Kind], None], *, verbose: bool) -> None:
        super().__init__()
        self.notice, self.verbose = notice, verbose

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith(RESTART_TEXT):
            plural = message[len(RESTART_TEXT) :].split(".", 1)[0]
            if plural in PLURALS:
                self.notice(PLURALS[plural])
        return self.verbose or record.levelno >= logging.INFO


def watch_restarts(notice: Callable[[Kind], None], *, verbose: bool) -> None:
    """Install ``WatchRestarts`` on kopf's watching logger."""
    logger = logging.getLogger(WATCH_LOGGER)
    logger.setLevel(logging.DEBUG)
    logger.addFilter(WatchRestarts(notice, verbose=verbose))


class Relister:
    def __init__(
        self,
        api: KubeApi,
        cache: ClusterCache,
        *,
        on_change: Callable[[], None],
        on_swept: Callable[[Kind, list[Key]], None] = lambda kind, keys: None,
        page: int = 500,
        quiet: float = 2.0,
        every: float = 600.0,
        kinds: Sequence[Kind] = BASE_KINDS,
    ) -> None:
        self.api, self.cache, self.page, self.quiet, self.every = api, cache, page, quiet, every
        self.kinds = tuple(kinds)
        self.missing: set[Kind] = set()  # optional kinds whose CRD was not there
        self.on_change, self.on_swept = on_change, on_swept
        self.listing_first: dict[Kind, float] = {}  # first None event since our last LIST
        self.listing_last: dict[Kind, float] = {}
        self.listed_at: dict[Kind, float] = {}  # when our last LIST of a kind started
        self.relists = 0
        self._wake = asyncio.Event()

    def saw_listing(self, kind: Kind) -> None:
        now = time.monotonic()
        if kind not in self.listing_first or self.listing_first[kind] < self.listed_at.get(kind, 0):
            self.listing_first[kind] = now
        self.listing_last[kind] = now
        self._wake.set()

    async def list_kind(self, kind: Kind) -> list[Key]:
        """One own LIST of ``kind`` into the cache, then the sweep; returns swept keys."""
        started = time.monotonic()
        present: set[Key] = set()
        version, changed = "", False
        try:
            async for items, page_version in self.api.list_pages(PATHS[kind], limit=self.page):
                version = page_version
                for obj in items:
                    changed = self.cache.relist_item(kind, obj, present) or changed
                await asyncio.sleep(0)  # let the watches breathe between pages
        except KubeApiError as exc:
            if kind not in OPTIONAL or exc.status != 404:
                raise
            if kind not in self.missing:
                log.warning("no %s in this cluster (is its CRD installed?): none enforced", kind)
            self.missing.add(kind)
            version = ""  # an empty list: sweep everything
        else:
            self.missing.discard(kind)
        swept = self.cache.relist_finish(kind, present, version)
        self.listed_at[kind] = started
        self.relists += 1
        if swept:
            log.info("swept %d %s that vanished across a re-list", len(swept), kind)
            self.on_swept(kind, swept)
        if changed or swept:
            self.on_change()
        return swept

    async def prime(self) -> None:
        """List every kind until it works (the API may not be up yet)."""
        for kind in self.kinds:
            delay = 0.5
            while True:
                try:
                    await self.list_kind(kind)
                    break
                except KubeApiError as exc:
                    log.warning("cannot list %s yet: %s", kind, exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)

    def due(self, now: float) -> list[Kind]:
        """Kinds kopf (re-)listed after our last LIST, quiet for ``quiet`` seconds,
        and kinds not listed for ``every`` seconds (the safety net)."""
        found = [
            kind
            for kind, first in self.listing_first.items()
            if first >= self.listed_at.get(kind, 0) and now - self.listing_last[kind] >= self.quiet
        ]
        stale = [k for k, at in self.listed_at.items() if now - at >= self.every and k not in found]
        return found + stale

    async def run(self) -> None:
        """Sweep after kopf re-lists (see module doc)."""
        while True:
            kinds = self.due(time.monotonic())
            for kind in kinds:
                try:
                    swept = await self.list_kind(kind)
                    log.info("re-listed %s after a kopf listing: %d swept", kind, len(swept))
                except KubeApiError as exc:
                    log.warning("re-list of %s failed: %s", kind, exc)
            if kinds:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.quiet)
