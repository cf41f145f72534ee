"""The agent's own list+watch (``agent.watching``) against the API server double.

In-process (no netns, no kernel): ``Watches`` feed a real ``ClusterCache``
from the double on its background thread.  One LIST per kind at start, events
after it, a 410 that makes every kind list again and sweep what vanished, and
a half-open watch (the double's freeze hook: no events, no bookmarks, no close)
that is detected, reported behind and followed by a re-list.
"""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

import kopf

from firewall_operator.agent import handlers, kubeapi, watching
from firewall_operator.agent.cache import BASE_KINDS, UPSTREAM_KINDS, ClusterCache, Kind
from tests.e2e.agent_env import Kube, deny_all
from tests.e2e.conftest import ApiServerHandle

STALL = 3.0


def pod(namespace: str, name: str, ip: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {"nodeName": "elsewhere", "containers": [{"name": "c", "image": "x"}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    }


class Harness:
    """``Watches`` over one cache, with every state change it reported."""

    def __init__(self, url: str, kinds: tuple[Kind, ...] = BASE_KINDS) -> None:
        api = kubeapi.KubeApi(kopf.ConnectionInfo(server=url, token="t"), dead_after=STALL)
        self.api, self.cache = api, ClusterCache()
        self.reports: list[tuple[float, str, bool]] = []  # (when, kind, behind)
        paths = {k: watching.collection_path(*handlers.RESOURCES[k]) for k in kinds}
        self.watches = watching.Watches(
            api,
            self.cache,
            paths,
            stall=STALL,
            on_change=lambda: None,
            on_state=self._state,
            optional=UPSTREAM_KINDS,
        )

    def _state(self, state: watching.WatchState) -> None:
        self.reports.append((time.monotonic(), state.kind, state.behind_since is not None))

    async def until(self, check: Callable[[], bool], timeout: float, what: str) -> float:
        """Seconds until ``check()`` held (AssertionError after ``timeout``)."""
        start = time.monotonic()
        while not check():
            if time.monotonic() - start > timeout:
                raise AssertionError(f"not within {timeout}s: {what}")
            await asyncio.sleep(0.05)
        return time.monotonic() - start


def run(
    url: str, scenario: Callable[[Harness], Awaitable[None]], kinds: tuple[Kind, ...] = BASE_KINDS
) -> None:
    async def main() -> None:
        harness = Harness(url, kinds)
        task = asyncio.create_task(harness.watches.run())
        try:
            await asyncio.wait_for(harness.watches.ready.wait(), 10)
            await scenario(harness)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await harness.api.close()

    asyncio.run(main())


def lists_by_agent(handle: ApiServerHandle, since: int) -> dict[str, int]:
    """Full LISTs per collection (first pages) the agent made after request ``since``."""
    found: dict[str, int] = {}
    for entry in handle.server.state.requests[since:]:
        query = urllib.parse.parse_qs(entry["query"])
        first_page = "limit" in query and "watch" not in query and "continue" not in query
        if "podwall-agent" in entry["user_agent"] and first_page:
            found[entry["path"]] = found.get(entry["path"], 0) + 1
    return found


def test_one_list_per_kind_then_events_and_a_410_relist_sweeps(
    apiserver: ApiServerHandle,
) -> None:
    kube = Kube(apiserver.url)
    kube.install_crds()
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "w1"}})
    kube.apply(deny_all("w1"))
    for n in range(3):
        kube.apply(pod("w1", f"p{n}", f"10.9.0.{n + 1}"))
    since = len(apiserver.server.state.requests)

    async def scenario(h: Harness) -> None:
        assert h.cache.pod("w1", "p2") is not None, "the first LIST filled the cache"
        paths = {watching.collection_path(*handlers.RESOURCES[k]) for k in BASE_KINDS}
        assert lists_by_agent(apiserver, since) == dict.fromkeys(paths, 1)
        kube.apply(pod("w1", "p3", "10.9.0.4"))
        await h.until(lambda: h.cache.pod("w1", "p3") is not None, 5, "watch event")

        def vanish() -> None:  # gone without a DELETED event, as across a watch gap
            apiserver.server.store.objects["/pods"].pop(("w1", "p0"))
            apiserver.server.store.next_rv()

        apiserver.server.call(vanish)
        apiserver.server.expire_watches()
        await h.until(lambda: h.cache.pod("w1", "p0") is None, 5, "swept after the 410")
        assert lists_by_agent(apiserver, since) == dict.fromkeys(paths, 2)
        assert not any(behind for _, _, behind in h.reports), "a 410 is not a failure"

    run(apiserver.url, scenario)


def test_half_open_watch_is_detected_reported_behind_and_relisted(
    apiserver: ApiServerHandle,
) -> None:
    kube = Kube(apiserver.url)
    kube.install_crds()
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "w2"}})

    async def scenario(h: Harness) -> None:
        await asyncio.sleep(1)  # bookmarks flow (every 0.5 s from this double)
        frozen = time.monotonic()
        apiserver.server.freeze_watches()
        kube.apply(pod("w2", "late", "10.9.1.1"))  # the frozen watch never tells
        took = await h.until(lambda: h.cache.pod("w2", "late") is not None, 4 * STALL, "late")
        # every watch hangs: each kind is reported behind one stall window after
        # the last byte it got (a bookmark at most 0.5 s before the freeze)
        behind = {kind: when - frozen for when, kind, is_behind in h.reports if is_behind}
        assert set(behind) == set(BASE_KINDS), behind
        assert all(STALL - 1 < delay < STALL + 4 for delay in behind.values()), behind
        assert all(w.state.stalls >= 1 for w in h.watches.kinds.values())
        assert set(h.watches.behind()) == set(BASE_KINDS), "no watch works yet"
        apiserver.server.freeze_watches(False)
        await h.until(lambda: not h.watches.behind(), 2 * STALL, "current again")
        print(f"half-open watch: change seen {took:.1f}s after the freeze (stall {STALL}s)")

    run(apiserver.url, scenario)


def test_kinds_without_a_crd_count_as_empty_and_are_not_behind(
    apiserver: ApiServerHandle,
) -> None:
    """The upstream kinds are optional: no CRD is an empty list, not a failure."""

    async def scenario(h: Harness) -> None:
        await asyncio.sleep(2 * STALL)  # longer than a stall window
        states = {s.kind: s for s in h.watches.states()}
        assert all(states[k].listings == 1 for k in UPSTREAM_KINDS), states
        assert h.watches.behind() == [], "a missing CRD is not a failure"
        assert all(w.missing for k, w in h.watches.kinds.items() if k in UPSTREAM_KINDS)

    run(apiserver.url, scenario, BASE_KINDS + UPSTREAM_KINDS)


def test_connections_carry_keepalive_and_user_timeout() -> None:
    make = kubeapi.keepalive_socket(12.0)
    sock = make((socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", 0)))
    with sock:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 4
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 2
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 12_000
