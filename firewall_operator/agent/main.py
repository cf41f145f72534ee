"""Wiring: settings, the ``Agent`` (cache, watches, reconciler, status, socket,
metrics), kopf settings, and ``run(args)`` for ``podwall agent``.

kopf runs standalone (no peering), with the handlers of
``handlers.build_registry`` only: login, start-up, probe and cleanup; the
watched kinds (the upstream policy kinds, and their status writer, only with
``--upstream-policy``) are listed and watched by ``watching`` (one LIST per
kind).  kopf posts no events of its own (``settings.posting.enabled = False``:
the status writer posts the few that matter).  On stop the kernel is left as
it is (pods stay protected) and the socket is removed; ``--cleanup`` removes
every podwall chain and set instead.  This module holds no policy and no
kernel logic.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any, cast

import kopf

from firewall_operator import applier as applier_mod
from firewall_operator import chains, logtags
from firewall_operator.agent import config as agent_config
from firewall_operator.agent import (
    counters,
    handlers,
    heap,
    logformat,
    node,
    reconcile,
    sockserver,
    status,
    trafficlog,
    upstream_status,
    watching,
)
from firewall_operator.agent.cache import BASE_KINDS, KINDS, UPSTREAM_KINDS, ClusterCache, Key, Kind
from firewall_operator.agent.errors import AgentError
from firewall_operator.agent.flows import FlowCutter
from firewall_operator.agent.kubeapi import KubeApi
from firewall_operator.agent.metrics import Metrics
from firewall_operator.nft_applier import NftApplier
from firewall_plugin import dataplane
from firewall_plugin.errors import PodwallError

log = logging.getLogger("podwall.agent")
STALE_AFTER = 180.0  # seconds without a good sync before the probe fails (at least)


def login(kubeconfig: str | None, settings: kopf.OperatorSettings) -> kopf.ConnectionInfo | None:
    """kopf's own kubeconfig or service-account login (one source of credentials)."""
    if kubeconfig:
        os.environ["KUBECONFIG"] = kubeconfig
        return kopf.login_with_kubeconfig(settings=settings)
    info = kopf.login_with_service_account(settings=settings)
    return info or kopf.login_with_kubeconfig(settings=settings)


class Agent:
    """Everything one node's agent runs (see ``handlers.AgentLike``)."""

    def __init__(self, cfg: agent_config.AgentConfig) -> None:
        self.cfg = cfg
        self.cache = ClusterCache(node=cfg.node)
        self.backend_name = node.backend_name(cfg.backend, cfg.run_dir)
        self.metrics = Metrics(node=cfg.node)
        self.metrics.record_backend(self.backend_name)
        self.traffic: trafficlog.TrafficLog | None = None
        if cfg.traffic_log != "off":
            output = trafficlog.open_output(cfg.traffic_log)
            self.traffic = trafficlog.TrafficLog(
                group=cfg.nflog_group, node=cfg.node, output=output
            )
            self.metrics.watch_traffic_log(self.traffic)
        logging = chains.Logging(
            group=cfg.nflog_group, rate=cfg.log_rate, burst=cfg.log_burst, denied=cfg.log_denied
        )
        self.drift = node.DriftWatch(self.backend_name, self._drifted)
        applier = node.make_applier(
            self.backend_name,
            run_dir=cfg.run_dir,
            state_dir=cfg.state_dir,
            log=logging.spec() if cfg.log_denied else None,
        )
        writer = reconcile.Writer(
            applier=applier,
            state_dir=cfg.state_dir,
            deny_action=cast(dataplane.DenyAction, cfg.deny_action),
            pod_default=cast(dataplane.PodDefault, cfg.pod_default),
            logging=logging,
            flows=FlowCutter() if cfg.cut_denied_flows else None,
            written=self.drift.written,
            quiet=self._quiet_writes(applier),
        )
        self.log_resolver: logtags.Resolver = logtags.no_tags
        if isinstance(writer.applier, counters.CounterSource):  # drop counters
            self.metrics.watch_drops(writer.applier, lambda: self.log_resolver)
        self.reconciler = reconcile.Reconciler(
            self.cache,
            writer,
            debounce=cfg.debounce_seconds,
            resync=cfg.resync_seconds,
            on_report=self._on_report,
        )
        self.socket = sockserver.SocketServer(self.reconciler, run_dir=cfg.run_dir)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.info: kopf.ConnectionInfo | None = None
        self.api: KubeApi | None = None
        self.relay: KubeApi | None = None
        self.watches: watching.Watches | None = None
        self.status: status.StatusWriter | None = None
        self.kinds = KINDS if cfg.upstream_policy else BASE_KINDS
        self.upstream_status: upstream_status.UpstreamStatusWriter | None = None
        self.started_at = time.monotonic()
        self._tasks: list[asyncio.Task[None]] = []

    # --- handlers.AgentLike ------------------------------------------------------

    def changed(self) -> None:
        self.reconciler.mark()

    def login(self, settings: kopf.OperatorSettings) -> kopf.ConnectionInfo | None:
        self.info = login(self.cfg.kubeconfig, settings)
        return self.info

    async def start(self, settings: kopf.OperatorSettings) -> None:
        configure(settings, node=self.cfg.node)
        info = self.info or login(self.cfg.kubeconfig, settings)
        if info is None:
            raise kopf.PermanentError("no kubeconfig and no service account to log in with")
        self.api = KubeApi(info, dead_after=self.cfg.watch_stall_seconds)
        sources: dict[Kind, KubeApi] = {}
        if self.cfg.pods_from:  # a relay serves pods (docs/scale.md)
            relay = kopf.ConnectionInfo(server=self.cfg.pods_from, insecure=info.insecure)
            sources["pods"] = self.relay = KubeApi(relay, dead_after=self.cfg.watch_stall_seconds)
        self.watches = watching.Watches(
            self.api,
            self.cache,
            {kind: watching.collection_path(*handlers.RESOURCES[kind]) for kind in self.kinds},
            stall=self.cfg.watch_stall_seconds,
            on_change=self.changed,
            on_state=self._on_watch_state,
            on_swept=self._on_swept,
            ready=self.reconciler.ready,  # the first sync waits for every kind's LIST
            sources=sources,
            optional=UPSTREAM_KINDS,  # their CRDs may be missing: listed as empty
        )
        self.status = status.StatusWriter(
            self.api, self.cache, node=self.cfg.node, backend=self.backend_name
        )
        # kubelet may start pods before the agent after a reboot: every record
        # gets at least its fail-closed state before the socket answers
        await asyncio.to_thread(node.repair_records, self.backend_name, self.cfg)
        self._loop = asyncio.get_running_loop()
        self.drift.start()
        await self.socket.start()
        self._start_traffic_log()
        self.metrics.serve(self.cfg.metrics_port, address=self.cfg.listen_address)
        jobs = [self.watches.run(), self.reconciler.run(), self.status.run()]
        if self.cfg.upstream_policy:
            self.upstream_status = upstream_status.UpstreamStatusWriter(
                self.api, self.cache, node=self.cfg.node
            )
            jobs.append(self.upstream_status.run())
        for job in jobs:
            self._tasks.append(asyncio.create_task(self._guard(job)))
        log.info("agent for node %s started (backend %s)", self.cfg.node, self.backend_name)

    def _start_traffic_log(self) -> None:
        if self.traffic is None:
            return
        try:
            self.traffic.start()
        except OSError as exc:
            log.warning("no traffic log: NFLOG group %d: %s", self.cfg.nflog_group, exc)
            self.traffic = None

    async def stop(self) -> None:
        """Leave the kernel as it is; stop serving and working."""
        self.drift.stop()
        await self.socket.stop()
        if self.traffic is not None:
            self.traffic.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for api in (self.api, self.relay):
            if api is not None:
                await api.close()

    def probe(self) -> dict[str, Any]:
        limit = max(3 * self.cfg.resync_seconds, STALE_AFTER)
        last = self.reconciler.last_ok
        if any(task.done() for task in self._tasks):
            raise RuntimeError("an agent task stopped")
        latest = self.reconciler.last
        if latest is not None and latest.unenforced:
            raise RuntimeError(latest.error)  # never healthy while pods are unfiltered
        if last is None:
            if time.monotonic() - self.started_at > limit * 2:
                raise RuntimeError("no successful sync since the agent started")
            return {"synced": False}
        age = time.time() - last.finished
        if age > limit:
            raise RuntimeError(f"last successful sync {age:.0f}s ago")
        return {"synced": True, "sequence": last.sequence, "age": round(age, 1)}

    # --- internals -----------------------------------------------------------------

    @staticmethod
    async def _guard(job: Any) -> None:
        try:
            await job
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("agent task failed")
            raise

    def _on_report(self, report: reconcile.SyncReport) -> None:
        self.metrics.record_sync(report, self.cache.counts())
        if report.ok:
            self.log_resolver = logtags.resolver(report.log_tags)
        if self.traffic is not None and report.ok:
            self.traffic.set_pods(self.cache.snapshot().pods)
            self.traffic.set_resolver(self.log_resolver)
        if self.status is not None:
            self.status.report(report)
        if self.upstream_status is not None:
            self.upstream_status.wake()
        for warning in report.warnings:
            log.warning("bridge netfilter: %s", warning)
        level = logging.INFO if report.ok else logging.WARNING
        log.log(
            level,
            "sync %d %s in %.3fs: %d endpoints, %d chains, %d rules%s",
            report.sequence,
            "ok" if report.ok else "FAILED",
            report.seconds,
            report.endpoints,
            report.chains,
            report.rules,
            f": {report.error}" if report.error else "",
        )

    def _quiet_writes(
        self, applier: applier_mod.NodeApplier
    ) -> Callable[[], contextlib.AbstractContextManager[None]]:
        """The writer's ``quiet``: the drift watch's, counting the nftables
        writer's commits (the iptables writers run processes: not counted)."""
        if not isinstance(applier, NftApplier):
            return contextlib.nullcontext
        nft = applier
        return functools.partial(self.drift.quiet, lambda: nft.commits)

    def _drifted(self) -> None:
        """From the drift thread: someone else changed podwall's kernel state."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(lambda: self.reconciler.mark(urgent=True, full=True))

    def _on_swept(self, kind: Kind, keys: list[Key]) -> None:
        self.metrics.swept.labels(kind).inc(len(keys))

    def _on_watch_state(self, state: watching.WatchState) -> None:
        self.metrics.record_watch(state)
        if self.status is not None and self.watches is not None:
            self.status.watch_report(self.watches.states())


def configure(settings: kopf.OperatorSettings, *, node: str) -> None:
    """kopf settings of a per-node agent (see module doc and docs/facts.md)."""
    settings.peering.standalone = True
    settings.posting.enabled = False
    settings.posting.reporting_component = "podwall-agent"
    settings.posting.reporting_instance = node
    settings.scanning.disabled = True
    settings.networking.request_timeout = 120


def cleanup(cfg: agent_config.AgentConfig) -> int:
    """``--cleanup``: remove every podwall table, chain and set of this node,
    in every data plane (the backend may have changed since they were written)."""
    cleaned = node.cleanup_everywhere(cfg.run_dir)
    where = ", ".join(cleaned) if cleaned else "none was left"
    print(f"podwall agent: removed every podwall table, chain and set ({where})")
    return 0


def run(args: argparse.Namespace) -> int:
    """``podwall agent``: run until SIGTERM/SIGINT; 0 on a clean stop."""
    try:
        cfg = agent_config.from_args(args)
        logformat.setup(cfg.log_format, verbose=cfg.verbose)
        if cfg.cleanup:
            return cleanup(cfg)
        heap.tune()
        agent = Agent(cfg)
    except (AgentError, PodwallError, OSError) as exc:
        print(f"podwall agent: {exc}", file=sys.stderr)
        return 1
    host = f"[{cfg.listen_address}]" if ":" in cfg.listen_address else cfg.listen_address
    liveness = f"http://{host}:{cfg.health_port}/healthz" if cfg.health_port else None
    kopf.run(
        registry=handlers.build_registry(agent),
        standalone=True,
        clusterwide=True,
        liveness_endpoint=liveness,
    )
    return 0
