"""The agent's one reconcile loop: debounce, compile, apply, resync, drift repair.

Handlers only ``mark()`` the state dirty.  ``Coalescer`` (pure) decides when
the loop runs: ``debounce`` seconds after the first mark (a burst becomes one
sync), at once for urgent marks (a CNI ADD waiting on ``agent.sock``), after
``retry`` on failure, and a full resync every ``resync`` seconds (the applier
compares with the kernel then, repairing drift and the FORWARD jump).

One sync (``Reconciler._sync``, in a worker thread): read the endpoint
records and their fingerprint, compile the whole node from the cache snapshot
(level-triggered) with the reconciler's one long-lived ``compiler.Compiler``
(it reuses the previous sync's index, chains and sets, so a sync after one
change costs a few percent of a fresh compile), apply its result as it is
(the applier's equality checks then are identity checks) with
``expect_endpoints`` so that records the plugin wrote meanwhile make it
recompile (optimistic "read under the lock").  Syncs never overlap (the
compiler is not thread-safe).  Nothing else writes the kernel.  The loop
never runs before the cache is primed (``ready``): compiling an empty cache
would strip every pod's policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from firewall_operator import applier as applier_mod
from firewall_operator import chains, cluster, compiler
from firewall_operator.agent import node
from firewall_operator.agent.cache import ClusterCache
from firewall_operator.agent.flows import FlowCutter
from firewall_operator.logtags import LogTag
from firewall_operator.problems import Problem
from firewall_plugin import dataplane, endpoints
from firewall_plugin.errors import PodwallError

log = logging.getLogger(__name__)
STALE_RETRIES = 5
UNENFORCED = "bridged pod traffic is not filtered"
RETRY_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0)


class Coalescer:
    """When the next sync is due (see module doc).  Pure: times are passed in."""

    def __init__(self, *, debounce: float, resync: float, now: float) -> None:
        self.debounce, self.resync = debounce, resync
        self.dirty_since: float | None = None
        self.urgent = False
        self.retry_at: float | None = None
        self.full = False  # a full sync was asked for (drift seen)
        self.last_full = now - resync  # the first sync is a full one

    def mark(self, now: float, *, urgent: bool = False, full: bool = False) -> None:
        if self.dirty_since is None:
            self.dirty_since = now
        self.urgent = self.urgent or urgent
        self.full = self.full or full

    def wait(self, now: float) -> float:
        """Seconds until the next sync (0: now)."""
        due = [self.last_full + self.resync]
        if self.dirty_since is not None:
            due.append(self.dirty_since if self.urgent else self.dirty_since + self.debounce)
        if self.retry_at is not None:
            due.append(self.retry_at)
        return max(min(due) - now, 0.0)

    def take(self, now: float) -> bool:
        """Start a sync now: clears the dirty state; True when it is a full resync."""
        full = now >= self.last_full + self.resync or self.retry_at is not None or self.full
        self.dirty_since, self.urgent, self.retry_at, self.full = None, False, None, False
        if full:
            self.last_full = now
        return full

    def failed(self, now: float, delay: float) -> None:
        self.retry_at = now + delay


@dataclass(frozen=True)
class SyncReport:
    """What one sync did (``ok`` False: ``error`` says why; the kernel is unchanged
    or partly changed, and the next sync reads it back)."""

    sequence: int
    ok: bool
    full: bool
    error: str = ""
    finished: float = 0.0  # wall clock
    seconds: float = 0.0
    cache_version: int = 0
    observed_version: int = 0  # the cache's highest resourceVersion when the sync began
    endpoints: int = 0
    chains: int = 0
    rules: int = 0
    sets: int = 0
    set_entries: int = 0
    problems: tuple[Problem, ...] = ()
    unmatched: tuple[str, ...] = ()
    generations: dict[str, int] = field(default_factory=dict)
    policy_generations: dict[str, int] = field(default_factory=dict)  # NetworkPolicy ns/name
    log_tags: Mapping[str, LogTag] = field(default_factory=dict)  # the compiled rules' tags
    stats: applier_mod.ApplyStats | None = None
    #: things the sync had to repair on the node itself (bridge netfilter)
    warnings: tuple[str, ...] = ()
    #: bridged pod traffic bypasses netfilter and the sync could not fix it
    unenforced: bool = False


@dataclass(frozen=True, slots=True)
class Writer:
    """How the node's kernel is written (from the agent config)."""

    applier: applier_mod.NodeApplier
    state_dir: str
    deny_action: dataplane.DenyAction = "drop"
    pod_default: dataplane.PodDefault = "deny"
    logging: chains.Logging = field(default_factory=chains.Logging)
    #: --cut-denied-flows: forget the conntrack entries of pods whose rules changed
    flows: FlowCutter | None = None
    #: called in the sync's thread right after every successful write (the
    #: drift watch takes what podwall left as the state to compare with)
    written: Callable[[], None] = lambda: None
    #: around every write: the drift watch stops listening and counts instead
    #: (``DriftWatch.quiet``: the kernel then builds no notification per object)
    quiet: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext


def new_compiler(writer: Writer) -> compiler.Compiler:
    return compiler.Compiler(
        deny_action=writer.deny_action, unknown_pod=writer.pod_default, logging=writer.logging
    )


def compile_and_apply(
    writer: Writer, comp: compiler.Compiler, snapshot: cluster.Snapshot, *, full: bool
) -> SyncReport:
    """One sync's kernel work (blocking; runs in a worker thread)."""
    for _ in range(STALE_RETRIES):
        fingerprint = applier_mod.endpoints_fingerprint(writer.state_dir)
        records = list(endpoints.read_all(writer.state_dir))
        warnings, unenforced = _bridge_netfilter(records)
        compiled = comp.compile(snapshot, records)
        try:
            with writer.quiet():
                stats = writer.applier.apply(
                    compiled.families,
                    endpoints=compiled.endpoints,
                    full=full,
                    expect_endpoints=fingerprint,
                )
        except applier_mod.StaleEndpointsError:
            continue
        writer.written()
        if writer.flows is not None:
            writer.flows.cut(compiled.families, records)
        sets = applier_mod.desired_sets(compiled.families)
        return SyncReport(
            sequence=0,
            ok=not unenforced,
            error=unenforced,
            warnings=warnings,
            unenforced=bool(unenforced),
            full=full,
            endpoints=len(records),
            chains=sum(len(state.chains) for state in compiled.families.values()),
            rules=compiled.rule_count,
            sets=len(sets),
            set_entries=sum(len(ipset.entries) for ipset in sets.values()),
            problems=compiled.problems,
            unmatched=compiled.unmatched,
            generations={rule.key: rule.generation for rule in snapshot.tiered},
            policy_generations={p.key: p.generation for p in snapshot.policies},
            stats=stats,
            log_tags=compiled.log_tags,
        )
    raise applier_mod.StaleEndpointsError("endpoint records kept changing during the sync")


def _bridge_netfilter(records: list[endpoints.EndpointRecord]) -> tuple[tuple[str, ...], str]:
    """(what was turned back on, why bridged traffic is unenforced or '')."""
    try:
        fixed = node.ensure_bridge_netfilter(records)
    except PodwallError as exc:
        return (), f"{UNENFORCED}: {exc}"
    return tuple(f"{name} was 0: set it to 1" for name in fixed), ""


class Reconciler:
    """The loop (``run``), its trigger (``mark``) and its waiters (``wait_synced``)."""

    def __init__(
        self,
        cache: ClusterCache,
        writer: Writer,
        *,
        debounce: float,
        resync: float,
        on_report: Callable[[SyncReport], None] = lambda report: None,
    ) -> None:
        self.cache, self.writer, self.on_report = cache, writer, on_report
        self.coalescer = Coalescer(debounce=debounce, resync=resync, now=time.monotonic())
        self.ready = asyncio.Event()
        self.started = 0  # sequence of the last sync started
        self.last: SyncReport | None = None
        self.last_ok: SyncReport | None = None
        self.failures = 0
        self.compiler = new_compiler(writer)
        self._lock = asyncio.Lock()  # one sync at a time: the compiler is not thread-safe
        self._wake = asyncio.Event()
        self._done = asyncio.Condition()

    def mark(self, *, urgent: bool = False, full: bool = False) -> int:
        """Ask for a sync (``full``: compare with the kernel, repairing drift);
        returns the sequence number of the sync that will include it."""
        self.coalescer.mark(time.monotonic(), urgent=urgent, full=full)
        self._wake.set()
        return self.started + 1

    async def wait_synced(self, ticket: int, timeout: float) -> SyncReport | None:
        """The report of sync ``ticket`` (or a later one); None on timeout."""

        def done() -> bool:
            return self.last is not None and self.last.sequence >= ticket

        async with self._done:
            try:
                await asyncio.wait_for(self._done.wait_for(done), timeout)
            except TimeoutError:
                return None
        return self.last

    async def run(self) -> None:
        await self.ready.wait()
        while True:
            wait = self.coalescer.wait(time.monotonic())
            if wait > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
                continue
            await self.sync_now()

    async def sync_now(self) -> SyncReport:
        async with self._lock:
            return await self._sync_locked()

    async def _sync_locked(self) -> SyncReport:
        full = self.coalescer.take(time.monotonic())
        self.started += 1
        sequence, version, observed = self.started, self.cache.version, self.cache.observed
        start = time.monotonic()
        snapshot = self.cache.snapshot()
        try:
            report = await asyncio.to_thread(self._sync, snapshot, full)
        except (PodwallError, OSError, ValueError) as exc:
            report = SyncReport(sequence=0, ok=False, full=full, error=str(exc))
        except Exception as exc:  # a compiler bug must not stop the loop: report and retry
            log.exception("sync crashed")
            report = SyncReport(sequence=0, ok=False, full=full, error=f"internal error: {exc!r}")
        report = dataclasses.replace(report, observed_version=observed)
        report = _stamp(report, sequence, version, time.monotonic() - start)
        self._finish(report)
        return report

    def _sync(self, snapshot: cluster.Snapshot, full: bool) -> SyncReport:
        return compile_and_apply(self.writer, self.compiler, snapshot, full=full)

    def _finish(self, report: SyncReport) -> None:
        self.last = report
        if report.ok:
            self.last_ok, self.failures = report, 0
        else:
            delay = RETRY_DELAYS[min(self.failures, len(RETRY_DELAYS) - 1)]
            self.failures += 1
            self.coalescer.failed(time.monotonic(), delay)
            log.warning("sync %d failed (retry in %.1fs): %s", report.sequence, delay, report.error)
        try:
            self.on_report(report)
        except Exception:  # a reporting bug must not stop the loop
            log.exception("reporting sync %d failed", report.sequence)
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._done:
            self._done.notify_all()


def _stamp(report: SyncReport, sequence: int, version: int, seconds: float) -> SyncReport:
    return dataclasses.replace(
        report, sequence=sequence, cache_version=version, seconds=seconds, finished=time.time()
    )
