"""Write the node's desired chains and sets into the kernel, changing only what differs.

``Applier(backend, run_dir=..., state_dir=...)`` remembers what it last wrote.
``apply(desired)`` holds the node-wide podwall lock for the whole write and:

1. decides what is *known*: its memory, or the kernel itself on the first
   call, on ``full=True`` (drift repair) and whenever the plugin may have
   written since (the endpoint-records folder changed, or no ``state_dir``);
2. fills new and changed sets (``ipset restore``, atomic swap);
3. runs ONE backend transaction per family with the changed chains and the
   stale podwall chains (make before break: the rules that referenced a stale
   chain are rewritten in the same transaction); the backend re-asserts the
   FORWARD jump at position 1; with nothing to write it only checks it;
4. destroys stale sets.

Chains the plugin wrote between two syncs (new pods' default chains, its
``PODWALL-FORWARD``) are simply kernel state: desired ones are rewritten,
others deleted.  On any failure the memory is dropped, so the next call
reads the kernel again.  The applier never compiles and never decides policy.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from firewall_operator import diff
from firewall_plugin import endpoints, ipsets, locking, model, names
from firewall_plugin.backends.base import Backend, KernelTable
from firewall_plugin.errors import BackendError, TryAgainError

Fingerprint = tuple[tuple[str, int, int, int], ...]
INCOMPATIBLE_SET_NOTE = names.comment("set being recreated")


class StaleEndpointsError(TryAgainError):
    """The endpoint records changed after the caller read them: recompile."""


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
    read_seconds: float = 0.0
    sets_seconds: float = 0.0
    chains_seconds: float = 0.0
    total_seconds: float = 0.0


@dataclass(slots=True)
class _Known:
    chains: dict[model.Family, dict[str, diff.KnownChain]]
    sets: dict[str, diff.KnownSet]
    forward: dict[model.Family, list[str]]


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


def read_forward(backend: Backend, family: model.Family) -> list[str]:
    """FORWARD's rules as iptables-save specs, cheaply: ``backend.read_forward``
    when the backend has one, else ``<iptables> -w -S FORWARD`` of the
    backend's variant (milliseconds, where a full save of a large table takes
    a hundred), else the backend's full ``read``."""
    reader = getattr(backend, "read_forward", None)
    if callable(reader):
        return list(reader(family))
    variant = {"iptables-nft": "nft", "iptables-legacy": "legacy", "iptc": "legacy"}
    if backend.name not in variant:
        return backend.read(family).forward
    from firewall_plugin.backends import restore

    argv = [restore.binary(variant[backend.name], family, ""), "-w", "-S", "FORWARD"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise BackendError(f"cannot run {argv[0]}: {exc.strerror}") from exc
    if done.returncode != 0:
        raise BackendError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    head = "-A FORWARD "
    return [line[len(head) :] for line in done.stdout.splitlines() if line.startswith(head)]


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
    ) -> None:
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
        full: bool = False,
        expect_endpoints: Fingerprint | None = None,
    ) -> ApplyStats:
        """Make the kernel hold ``desired`` (families left out mean "nothing").

        ``full`` compares with the kernel instead of memory (drift repair).
        ``expect_endpoints``: the fingerprint taken when the caller read the
        endpoint records; when the records changed since, nothing is written
        and StaleEndpointsError is raised.  Raises BackendError.
        """
        stats = ApplyStats()
        start = time.monotonic()
        with locking.podwall_lock(self.run_dir, timeout=self.lock_timeout):
            fingerprint = self._current_fingerprint()
            if expect_endpoints is not None and fingerprint != expect_endpoints:
                raise StaleEndpointsError("endpoint records changed since they were read")
            try:
                self._apply_locked(desired, full=full, fingerprint=fingerprint, stats=stats)
            except BaseException:
                self._chains = self._sets = self._fingerprint = None
                raise
        stats.total_seconds = time.monotonic() - start
        return stats

    def resync(self, desired: Mapping[model.Family, model.FamilyState]) -> ApplyStats:
        """Repair drift: compare with what the kernel holds and rewrite it."""
        return self.apply(desired, full=True)

    def cleanup(self) -> None:
        """Remove every podwall chain, the FORWARD jumps and every podwall set."""
        with locking.podwall_lock(self.run_dir, timeout=self.lock_timeout):
            self._chains = self._sets = self._fingerprint = None
            for family in model.FAMILIES:
                self.backend.remove_all(family)
            ipsets.apply(destroy=ipsets.list_names())

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
        ipsets.apply(replace=set_plan.replace)
        update_sets(set_plan.update)
        stats.sets_seconds += time.monotonic() - moment
        moment = time.monotonic()
        for family, plan in plans.items():
            has_forward = names.FORWARD_CHAIN in (
                desired[family].chains if family in desired else {}
            )
            self._write_family(family, plan, known.forward.get(family), has_forward, stats)
        stats.chains_seconds = time.monotonic() - moment
        moment = time.monotonic()
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
        return _Known(chains, sets, {family: table.forward for family, table in tables.items()})

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
                self.backend.apply(family, replace=users)
        ipsets.apply(destroy=plan.recreate)

    def _write_family(
        self,
        family: model.Family,
        plan: diff.ChainPlan,
        forward: list[str] | None,
        has_forward: bool,
        stats: ApplyStats,
    ) -> None:
        if plan.empty:
            if not has_forward:
                return
            if forward is None:
                forward = read_forward(self.backend, family)
            if diff.forward_in_place(forward):
                return
        if has_forward and forward is not None and not diff.forward_in_place(forward):
            stats.forward_reasserted += 1
        self.backend.apply(family, replace=plan.replace, delete=plan.delete)
        stats.transactions += 1
        stats.chains_written += len(plan.replace)
        stats.rules_written += plan.rules
        stats.chains_deleted += len(plan.delete)
