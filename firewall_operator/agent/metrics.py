"""Prometheus metrics of one agent (its own registry; ``serve`` exposes them).

Sync duration and outcome, what the node holds (endpoints, chains, rules,
sets, set entries), cache sizes, sweeps, watches (listings, stalls, behind)
and fast-path requests.  Only
``record_*`` functions change values; nothing here touches the kernel or the API.
``watch_traffic_log`` exports the traffic log's own counters (lines written,
lines dropped by the reader, kernel overruns) and ``watch_drops`` the drop
counters of a ``counters.CounterSource``, both read at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from firewall_operator import logtags
from firewall_operator.agent import counters
from firewall_operator.agent.reconcile import SyncReport
from firewall_operator.agent.watching import WatchState


class TrafficLogLike(Protocol):
    lines: int
    dropped: int

    @property
    def overruns(self) -> int: ...


class _TrafficLogCollector(Collector):
    def __init__(self, traffic: TrafficLogLike) -> None:
        self.traffic = traffic

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "podwall_traffic_log_lines", "Traffic log lines written", value=self.traffic.lines
        )
        dropped = CounterMetricFamily(
            "podwall_traffic_log_dropped_lines",
            "Traffic log lines lost because the writer was behind",
            value=self.traffic.dropped,
        )
        yield dropped
        yield CounterMetricFamily(
            "podwall_traffic_log_overruns",
            "Times the kernel dropped NFLOG messages because the reader was behind",
            value=self.traffic.overruns,
        )


class Metrics:
    def __init__(self, *, node: str) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.sync_seconds = Histogram(
            "podwall_sync_duration_seconds",
            "Duration of one sync (compile and apply)",
            ["kind"],
            registry=r,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.syncs = Counter("podwall_syncs", "Syncs by outcome", ["outcome"], registry=r)
        self.errors = Counter("podwall_sync_errors", "Failed syncs", registry=r)
        self.last_sync = Gauge(
            "podwall_last_successful_sync_timestamp_seconds",
            "Wall time of the last good sync",
            registry=r,
        )
        self.held = Gauge(
            "podwall_node_objects", "What the node's kernel holds", ["what"], registry=r
        )
        self.cached = Gauge("podwall_cache_objects", "Cached cluster objects", ["kind"], registry=r)
        self.swept = Counter(
            "podwall_cache_swept", "Objects swept after re-lists", ["kind"], registry=r
        )
        self.listings = Gauge(
            "podwall_watch_listings",
            "LISTs of a kind since start (1: no re-list)",
            ["kind"],
            registry=r,
        )
        self.stalls = Gauge(
            "podwall_watch_stalls", "Watches given up for silence", ["kind"], registry=r
        )
        self.behind = Gauge(
            "podwall_watch_behind",
            "1 while a kind's watch is being re-established",
            ["kind"],
            registry=r,
        )
        self.fast_path = Counter("podwall_fast_path_requests", "agent.sock requests", registry=r)
        self.info = Gauge("podwall_agent_info", "Agent identity", ["node", "backend"], registry=r)
        self.node = node

    def record_sync(self, report: SyncReport, cache_counts: dict[str, int]) -> None:
        self.sync_seconds.labels("full" if report.full else "incremental").observe(report.seconds)
        self.syncs.labels("ok" if report.ok else "error").inc()
        if not report.ok:
            self.errors.inc()
            return
        self.last_sync.set(report.finished)
        for what, value in (
            ("endpoints", report.endpoints),
            ("chains", report.chains),
            ("rules", report.rules),
            ("sets", report.sets),
            ("set_entries", report.set_entries),
        ):
            self.held.labels(what).set(value)
        for kind, count in cache_counts.items():
            self.cached.labels(kind).set(count)

    def record_watch(self, state: WatchState) -> None:
        self.listings.labels(state.kind).set(state.listings)
        self.stalls.labels(state.kind).set(state.stalls)
        self.behind.labels(state.kind).set(0 if state.behind_since is None else 1)

    def watch_traffic_log(self, traffic: TrafficLogLike) -> None:
        self.registry.register(_TrafficLogCollector(traffic))

    def watch_drops(
        self, source: counters.CounterSource, resolve: Callable[[], logtags.Resolver]
    ) -> counters.DropCounters:
        found = counters.DropCounters(source, resolve)
        self.registry.register(found)
        return found

    def record_backend(self, backend: str) -> None:
        self.info.labels(self.node, backend).set(1)

    def serve(self, port: int, *, address: str = "0.0.0.0") -> None:
        if port > 0:
            start_http_server(port, addr=address, registry=self.registry)
