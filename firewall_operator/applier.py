"""Write the node's desired chains and sets into the kernel, changing only what differs.

``Applier(backend, run_dir=..., state_dir=...)`` remembers what it last wrote.
``apply(desired, endpoints=...)`` adds the identity and dispatch chains of
``endpoints`` (``firewall_plugin.xtables``) to the desired policy chains,
holds the node-wide podwall lock for the whole write and:

1. decides what is *known*: its memory, or the kernel itself on the first
   call, on ``full=True`` (drift repair) and whenever the plugin may have
   written since (the endpoint-records folder changed, or no ``state_dir``);
2. fills new and changed sets (``ipset restore``, atomic swap);
3. runs ONE backend transaction per family with the changed chains and the
   stale podwall chains (make before break: the rules that referenced a stale
   chain are rewritten in the same transaction), telling the backend which
   podwall chains exist (``existing``) so that it reads only the hooks, not
   the whole table; the backend re-asserts the FORWARD and INPUT jumps at
   position 1; with nothing to write the applier only checks them
   (``read_hooks``);
4. destroys stale sets.

When a write that trusted memory fails (the kernel refused a transaction:
nothing changed), the applier forgets, reads the kernel and tries once more.

Chains the plugin wrote between two syncs (new pods' default chains, its
dispatch chains) are simply kernel state: desired ones are rewritten,
others deleted.  On any failure the memory is dropped, so the next call
reads the kernel again.  The applier never compiles and never decides policy.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from firewall_operator import diff
from firewall_plugin import endpoints, ipsets, locking, model, names, sync, xtables
from firewall_plugin.backends.base import Backend, KernelTable
from firewall_plugin.errors import BackendError, TryAgainError

Fingerprint = tuple[tuple[str, int, int, int], ...]
INCOMPATIBLE_SET_NOTE = names.comment("set being recreated")


class StaleEndpointsError(TryAgainError):
    """The endpoint records changed after the caller read them: recompile."""


class NodeApplier(Protocol):
    """What the agent needs of a writer of the node's kernel state: this
    module's ``Applier`` (iptables backends) or ``nft_applier.NftApplier``."""

    def apply(
        self,
        desired: Mapping[model.Family, model.FamilyState],
        *,
        endpoints: Sequence[model.Endpoint] = (),
        full: bool = False,
        expect_endpoints: Fingerprint | None = None,
    ) -> ApplyStats: ...

    def cleanup(self) -> None: ...


@dataclass(slots=True)
class ApplyStats:
    """What one call wrote and how long each stage took (seconds)."""

    chains_written: int = 0
    rules_written: int = 0
    chains_deleted: int = 0
    sets_written: int = 0
    set_entries_written: int = 0
    sets_destroyed: int = 0
    transactions: int = 0
    forward_reasserted: int = 0
    kernel_read: bool = False
    retries: int = 0
    read_seconds: float = 0.0
    sets_seconds: float = 0.0
    chains_seconds: float = 0.0
    total_seconds: float = 0.0


@dataclass(slots=True)
class _Known:
    chains: dict[model.Family, dict[str, diff.KnownChain]]
    sets: dict[str, diff.KnownSet]
    hooks: dict[model.Family, dict[str, list[str]]]


def endpoints_fingerprint(state_dir: str) -> Fingerprint:
    """Name, inode, mtime and size of every endpoint record (and the folder).
    Every plugin ADD, DEL and GC changes it."""
    directory = endpoints.endpoints_dir(state_dir)
    try:
        top = os.stat(directory)
        found = [("", top.st_ino, top.st_mtime_ns, 0)]
        with os.scandir(directory) as entries:
            for entry in entries:
                info = entry.stat(follow_symlinks=False)
                found.append((entry.name, info.st_ino, info.st_mtime_ns, info.st_size))
    except FileNotFoundError:
        return ()
    return tuple(sorted(found))


def _ipset(args: list[str], text: str | None = None) -> str:
    try:
        done = subprocess.run(
            ["ipset", *args], input=text, capture_output=True, text=True, check=False
        )
    except OSError as exc:
        raise BackendError(f"cannot run ipset: {exc.strerror}") from exc
    if done.returncode != 0:
        raise BackendError(f"ipset {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def read_kernel_sets() -> dict[str, diff.KernelSet]:
    """Every podwall set of this network namespace (one ``ipset save``)."""
    return diff.parse_ipset_save(_ipset(["save"]))


def update_sets(updates: Sequence[diff.SetDelta]) -> None:
    """Apply small entry changes to existing sets in one ``ipset restore``."""
    if updates:
        _ipset(["restore"], diff.render_set_updates(updates))


def desired_sets(desired: Mapping[model.Family, model.FamilyState]) -> dict[str, model.IPSet]:
    merged: dict[str, model.IPSet] = {}
    for state in desired.values():
        for name, ipset in state.sets.items():
            if name in merged and merged[name] != ipset:
                raise ValueError(f"set {name} is desired twice with different contents")
            merged[name] = ipset
    return merged


class Applier:
    """Apply desired states for one node; see the module docstring."""

    def __init__(
        self,
        backend: Backend,
        *,
        run_dir: str,
        state_dir: str | None = None,
        lock_timeout: float = 30.0,
        log: model.LogSpec | None = None,
    ) -> None:
        self.log = log  # log the identity drops too (the agent's --log-denied)
        self.backend = backend
        self.run_dir = run_dir
        self.state_dir = state_dir
        self.lock_timeout = lock_timeout
        self._chains: dict[model.Family, dict[str, diff.KnownChain]] | None = None
        self._sets: dict[str, diff.KnownSet] | None = None
        self._fingerprint: Fingerprint | None = None

    def apply(
        self,
        desired: Mapping[model.Family, model.FamilyState],
        *,
        endpoints: Sequence[model.Endpoint] = (),
        full: bool = False,
        expect_endpoints: Fingerprint | None = None,
    ) -> ApplyStats:
        """Make the kernel hold ``desired`` (families left out mean "nothing")
        and the dispatch of ``endpoints``.

        ``full`` compares with the kernel instead of memory (drift repair).
        ``expect_endpoints``: the fingerprint taken when the caller read the
        endpoint records; when the records changed since, nothing is written
        and StaleEndpointsError is raised.  Raises BackendError.
        """
        stats = ApplyStats()
        start = time.monotonic()
        desired = self.with_dispatch(desired, endpoints)
        with locking.podwall_lock(self.run_dir, timeout=self.lock_timeout):
            fingerprint = self._current_fingerprint()
            if expect_endpoints is not None and fingerprint != expect_endpoints:
                raise StaleEndpointsError("endpoint records changed since they were read")
            try:
                self._attempt(desired, full=full, fingerprint=fingerprint, stats=stats)
            except BackendError:
                if stats.kernel_read:
                    raise
                # memory disagreed with the kernel: read it, then plan again
                stats = ApplyStats(retries=1)
                self._attempt(desired, full=full, fingerprint=fingerprint, stats=stats)
        stats.total_seconds = time.monotonic() - start
        return stats

    def read_counters(self) -> dict[str, tuple[int, int]]:
        """Packets and bytes per tag of podwall's tagged rules (drop metrics):
        one ``iptables-save -c`` per family."""
        variant = "nft" if self.backend.name == "iptables-nft" else "legacy"
        totals: dict[str, tuple[int, int]] = {}
        for family in model.FAMILIES:
            tool = f"{'ip6tables' if family == 'ipv6' else 'iptables'}-{variant}-save"
            done = subprocess.run(
                [tool, "-c", "-t", "filter"], capture_output=True, text=True, check=False
            )
            for line in done.stdout.splitlines():
                counts, _, rule = line.partition(" ")
                marker = rule.find('--comment "podwall: pw:')
                if not counts.startswith("[") or marker < 0 or not rule.startswith("-A PODWALL"):
                    continue
                if " -j NFLOG " in rule:  # the log rule before a drop: its packets count there
                    continue
                tag = rule[marker + len('--comment "podwall: ') :].split(" ", 1)[0].rstrip('"')
                packets, _, size = counts.strip("[]").partition(":")
                before = totals.get(tag, (0, 0))
                totals[tag] = (before[0] + int(packets), before[1] + int(size))
        return totals

    def resync(
        self,
        desired: Mapping[model.Family, model.FamilyState],
        *,
        endpoints: Sequence[model.Endpoint] = (),
    ) -> ApplyStats:
        """Repair drift: compare with what the kernel holds and rewrite it."""
        return self.apply(desired, endpoints=endpoints, full=True)

    def with_dispatch(
        self, desired: Mapping[model.Family, model.FamilyState], endpoints: Sequence[model.Endpoint]
    ) -> dict[model.Family, model.FamilyState]:
        """``desired`` plus the identity and dispatch chains of ``endpoints``."""
        merged: dict[model.Family, model.FamilyState] = dict(desired)
        for family in model.FAMILIES:
            extra = xtables.dispatch_chains(
                endpoints, family, state_dir=self.state_dir or "", log=self.log
            )
            if not extra:
                continue
            state = merged.get(family, model.FamilyState(family))
            chains = {**state.chains, **{chain.name: chain for chain in extra}}
            merged[family] = model.FamilyState(family, chains=chains, sets=state.sets)
        return merged

    def cleanup(self) -> None:
        """Remove every podwall chain, the hook jumps and every podwall set."""
        with locking.podwall_lock(self.run_dir, timeout=self.lock_timeout):
            self._chains = self._sets = self._fingerprint = None
            for family in model.FAMILIES:
                self.backend.remove_all(family)
            ipsets.apply(destroy=ipsets.list_names())

    def _attempt(
        self,
        desired: Mapping[model.Family, model.FamilyState],
        *,
        full: bool,
        fingerprint: Fingerprint | None,
        stats: ApplyStats,
    ) -> None:
        """``_apply_locked``; on any failure forget everything (read next time)."""
        try:
            self._apply_locked(desired, full=full, fingerprint=fingerprint, stats=stats)
        except BaseException:
            self._chains = self._sets = self._fingerprint = None
            raise

    def _current_fingerprint(self) -> Fingerprint | None:
        return endpoints_fingerprint(self.state_dir) if self.state_dir is not None else None

    def _apply_locked(
        self,
        desired: Mapping[model.Family, model.FamilyState],
        *,
        full: bool,
        fingerprint: Fingerprint | None,
        stats: ApplyStats,
    ) -> None:
        known = self._known(full=full, fingerprint=fingerprint, stats=stats)
        wanted_sets = desired_sets(desired)
        set_plan = diff.plan_sets(desired=wanted_sets, known=known.sets)
        plans = {
            family: diff.plan_chains(
                family=family,
                desired=desired[family].chains if family in desired else {},
                known=known.chains[family],
            )
            for family in model.FAMILIES
        }
        moment = time.monotonic()
        self._recreate_clashing(set_plan, known)
        if set_plan.replace:
            ipsets.apply(replace=set_plan.replace)
        update_sets(set_plan.update)
        stats.sets_seconds += time.monotonic() - moment
        moment = time.monotonic()
        self._write_chains(desired, plans, known, stats)
        stats.chains_seconds = time.monotonic() - moment
        moment = time.monotonic()
        if set_plan.destroy:
            ipsets.apply(destroy=set_plan.destroy)
        stats.sets_seconds += time.monotonic() - moment
        stats.sets_written = set_plan.written
        stats.set_entries_written = set_plan.entries
        stats.sets_destroyed = len(set_plan.destroy)
        self._chains = {
            family: dict(desired[family].chains) if family in desired else {}
            for family in model.FAMILIES
        }
        self._sets = dict(wanted_sets)
        self._fingerprint = fingerprint

    def _known(self, *, full: bool, fingerprint: Fingerprint | None, stats: ApplyStats) -> _Known:
        """Memory when it can be trusted, else the kernel (chains, and sets on full)."""
        read_sets = full or self._sets is None
        read_chains = read_sets or self._chains is None or fingerprint is None
        read_chains = read_chains or fingerprint != self._fingerprint
        if not read_chains and self._chains is not None and self._sets is not None:
            return _Known(self._chains, self._sets, {})
        moment = time.monotonic()
        stats.kernel_read = True
        tables: dict[model.Family, KernelTable] = {
            family: self.backend.read(family) for family in model.FAMILIES
        }
        chains: dict[model.Family, dict[str, diff.KnownChain]] = {
            family: {name: tuple(specs) for name, specs in table.chains.items()}
            for family, table in tables.items()
        }
        sets: dict[str, diff.KnownSet] = (
            dict(read_kernel_sets()) if read_sets or self._sets is None else self._sets
        )
        stats.read_seconds = time.monotonic() - moment
        return _Known(chains, sets, {family: table.hooks for family, table in tables.items()})

    def _recreate_clashing(self, plan: diff.SetPlan, known: _Known) -> None:
        """Sets whose kernel header differs cannot be swapped: first turn every
        chain that uses them into a DROP (fail closed), then destroy them; the
        chain transaction that follows rewrites those chains as desired."""
        if not plan.recreate:
            return
        drop = (model.Rule("DROP", INCOMPATIBLE_SET_NOTE),)
        for family in model.FAMILIES:
            users = [
                model.Chain(name, drop)
                for name, chain in known.chains[family].items()
                if diff.references(chain, plan.recreate, family)
            ]
            if users:
                self.backend.apply(family, replace=users, existing=known.chains[family].keys())
        ipsets.apply(destroy=plan.recreate)

    def _write_chains(
        self,
        desired: Mapping[model.Family, model.FamilyState],
        plans: Mapping[model.Family, diff.ChainPlan],
        known: _Known,
        stats: ApplyStats,
    ) -> None:
        """One transaction per family, the families in parallel threads (each
        waits mostly on its own restore process; ``iptc`` runs them in turn)."""

        def write(family: model.Family) -> tuple[int, int]:
            return self._write_family(
                family,
                plans[family],
                existing=known.chains[family].keys(),
                hooks=known.hooks.get(family),
                wanted_hooks=[
                    hook
                    for hook, chain in names.HOOK_CHAINS.items()
                    if family in desired and chain in desired[family].chains
                ],
            )

        for family, (written, reasserted) in sync.for_families(
            self.backend, model.FAMILIES, write
        ).items():
            stats.transactions += written
            stats.forward_reasserted += reasserted
            if written:
                stats.chains_written += len(plans[family].replace)
                stats.rules_written += plans[family].rules
                stats.chains_deleted += len(plans[family].delete)

    def _write_family(
        self,
        family: model.Family,
        plan: diff.ChainPlan,
        *,
        existing: Collection[str],
        hooks: dict[str, list[str]] | None,
        wanted_hooks: list[str],
    ) -> tuple[int, int]:
        """One transaction for ``family`` (``existing``: its podwall chains
        now), or none when nothing changed and the hook jumps are in place.
        Returns (transactions, hook jumps re-asserted)."""
        if plan.empty:
            if not wanted_hooks:
                return 0, 0
            if hooks is None:
                hooks = self.backend.read_hooks(family)
            if diff.hooks_in_place(hooks, wanted_hooks):
                return 0, 0
        moved = (
            bool(wanted_hooks)
            and hooks is not None
            and not diff.hooks_in_place(hooks, wanted_hooks)
        )
        self.backend.apply(family, replace=plan.replace, delete=plan.delete, existing=existing)
        return 1, int(moved)
