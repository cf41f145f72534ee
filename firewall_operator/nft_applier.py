"""Write the node's desired state into podwall's nftables tables: one transaction.

``NftApplier(run_dir=..., state_dir=...)`` has the ``Applier``'s interface
(``apply``, ``resync``, ``cleanup``) for the ``nftables`` backend.  Every
call is ONE netlink transaction, in this process, holding the podwall lock:
peer sets and their elements, policy chains and their rules, identity
elements (verdict maps and sets: ``nft.layout``) change together, so a packet
sees the old ruleset or the new one, never a mix.

* The first call, a ``resync`` that finds the kernel differs from what was
  written, and any failed incremental write rebuild both tables from
  scratch in one transaction (make before break is implicit: the old
  tables go in the same transaction that brings the new ones).
* Otherwise only what changed since the last call is written: new and
  changed chains (flushed and refilled), set element deltas (interval sets
  are refilled), identity elements added and removed, stale chains and sets
  destroyed last.
* Peer sets are translated to nft elements only when they changed since the
  last call (remembered per set name; of a changed hash set only its new
  entries): a sync costs what changed, not the cluster's size.
* Chains the plugin reset between two syncs (a new pod's default chains) are
  rewritten: when the endpoint records changed, the policy chains of every
  new or changed record are written again.
* ``verify()`` compares the kernel with what was written (chains and the
  digests their rules carry in their user data, set elements, the table's
  layout) at a few dumps' cost; ``resync`` rebuilds when it differs.
* Encoding is paid once: each chain's ``add rule`` messages and digests are
  kept while the chain is unchanged (``nft_render.EncodedChain``: a rebuild
  after drift and ``verify`` reuse them); rules and hash set members are
  memoized in ``nft.translate``, endpoints' identity items in
  ``nft_render``.  ``apply`` keeps its netlink socket between calls (see
  ``_netlink``).

Never compiles and never decides policy.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from operator import attrgetter

from firewall_operator import chains, collector
from firewall_operator.applier import (
    ApplyStats,
    Fingerprint,
    StaleEndpointsError,
    endpoints_fingerprint,
)
from firewall_operator.nft_render import Desired, EncodedChain, SetCache, render
from firewall_plugin import locking, model
from firewall_plugin.errors import BackendError
from firewall_plugin.nft import kernel, layout, ops, translate
from firewall_plugin.nft import netlink as nl
from firewall_plugin.nft import objects as obj

_KEY = attrgetter("key")
#: the least size of a hash peer set (elements): small sets grow without a rebuild
SET_ROOM = 64


def _netns_inode() -> int:
    """The inode of this thread's network namespace (0 without /proc)."""
    try:
        return os.stat("/proc/thread-self/ns/net").st_ino
    except OSError:
        return 0


def _most_used_first(wanted: Desired) -> list[str]:
    """The peer sets' names, the ones more rules match against first: the
    kernel finds a rule's set by walking the table's sets in creation order,
    comparing names (``nft_set_lookup``), so this order takes 20% off the
    kernel's share of a full write of the bench workload (180 -> 142 ms)."""
    uses: dict[str, int] = dict.fromkeys(wanted.sets, 0)
    for _, chain in wanted.chains.values():
        for rule in chain.rules:
            for match in rule.matches:
                if match.module == "set":
                    for _, value in match.options:
                        name = value.partition(" ")[0]
                        if name in uses:
                            uses[name] += 1
    return sorted(uses, key=uses.__getitem__, reverse=True)


class NftApplier:
    """Apply desired states for one node through nftables; see the module docstring."""

    def __init__(
        self,
        *,
        run_dir: str,
        state_dir: str | None = None,
        lock_timeout: float = 30.0,
        log: model.LogSpec | None = None,
    ) -> None:
        self.log = log  # log the anti-spoofing drops too (the agent's --log-denied)
        self.run_dir = run_dir
        self.state_dir = state_dir
        self.lock_timeout = lock_timeout
        self.name = "nftables"
        self._known: Desired | None = None
        self._sets: SetCache = {}  # translated peer sets (see render)
        self._encoded: dict[str, EncodedChain] = {}  # chains' rules by nft name
        self._fingerprint: Fingerprint | None = None
        self._sizes: dict[str, int] = {}  # the kernel's size of each hash peer set
        self.generation = 0  # the ruleset generation our last commit made
        self.commits = 0  # transactions committed so far (the drift watch counts them)
        self._sock: nl.Netlink | None = None  # apply's socket (see _netlink)
        self._sock_place: tuple[int, int] = (0, 0)  # (pid, netns inode) it belongs to

    # --- the Applier interface ---------------------------------------------------

    def apply(
        self,
        desired: Mapping[model.Family, model.FamilyState],
        *,
        endpoints: Sequence[model.Endpoint] = (),
        full: bool = False,
        expect_endpoints: Fingerprint | None = None,
    ) -> ApplyStats:
        with collector.paused():
            return self._apply(desired, endpoints, full, expect_endpoints)

    def _apply(
        self,
        desired: Mapping[model.Family, model.FamilyState],
        endpoints: Sequence[model.Endpoint],
        full: bool,
        expect_endpoints: Fingerprint | None,
    ) -> ApplyStats:
        stats = ApplyStats()
        start = time.monotonic()
        wanted = render(desired, endpoints, self._sets)
        for name in [name for name in self._encoded if name not in wanted.chains]:
            del self._encoded[name]
        with locking.podwall_lock(self.run_dir, timeout=self.lock_timeout):
            fingerprint = endpoints_fingerprint(self.state_dir) if self.state_dir else None
            if expect_endpoints is not None and fingerprint != expect_endpoints:
                raise StaleEndpointsError("endpoint records changed since they were read")
            with self._netlink() as sock:
                if not wanted.items and not wanted.chains:  # no pod: no podwall trace
                    self._remove_tables(sock)
                    rebuild = False
                elif self._known is not None and not self._known.items:
                    rebuild = True  # the tables were removed with the last pod
                else:
                    rebuild = self._known is None or (full and not self._matches(sock))
                if not rebuild and (wanted.items or wanted.chains):
                    try:
                        rebuild = not self._incremental(sock, wanted, fingerprint, stats)
                    except BackendError:
                        stats = ApplyStats(retries=1)
                        rebuild = True
                if rebuild:
                    self._known = None
                    self._rebuild(sock, wanted, stats)
                self.generation = sock.generation()
            self._known, self._fingerprint = wanted, fingerprint
        stats.total_seconds = time.monotonic() - start
        return stats

    def resync(
        self,
        desired: Mapping[model.Family, model.FamilyState],
        *,
        endpoints: Sequence[model.Endpoint] = (),
    ) -> ApplyStats:
        return self.apply(desired, endpoints=endpoints, full=True)

    @contextmanager
    def _netlink(self) -> Iterator[nl.Netlink]:
        """The socket ``apply`` writes through, kept from one call to the next
        (only ``apply`` uses it, under the podwall lock): closing a netfilter
        socket after a commit that deleted anything waits for the kernel to
        free it (an RCU grace period, 12-24 ms measured), so a sync that
        removes a pod from a set would pay that every time.  A new socket is
        opened in another process or network namespace, and after any error
        (the old one may hold an unread answer)."""
        place = (os.getpid(), _netns_inode())
        if self._sock is None or self._sock_place != place:
            if self._sock is not None:
                self._sock.close()  # this copy only: another process keeps its own
            self._sock, self._sock_place = nl.Netlink(), place
        try:
            yield self._sock
        except BaseException:
            self._sock.close()
            self._sock = None
            raise

    def _commit(self, sock: nl.Netlink, batch: nl.Batch) -> None:
        """One transaction (none for an empty batch), counted in ``commits``."""
        if len(batch):
            sock.commit(batch)
            self.commits += 1

    def _remove_tables(self, sock: nl.Netlink) -> None:
        if ops.table_state(sock)[0] or kernel.table_comment(sock, layout.BRIDGE) is not None:
            batch = nl.Batch()
            obj.destroy_table(batch, layout.INET, layout.TABLE)
            obj.destroy_table(batch, layout.BRIDGE, layout.TABLE)
            self._commit(sock, batch)

    def cleanup(self) -> None:
        """Delete podwall's tables."""
        with locking.podwall_lock(self.run_dir, timeout=self.lock_timeout):
            self._known = None
            ops.remove_all()

    def read_counters(self) -> dict[str, tuple[int, int]]:
        """Packets and bytes per tag of the counting rules (drop metrics)."""
        totals: dict[str, tuple[int, int]] = {}
        with nl.Netlink() as sock:
            readings = kernel.rule_counters(sock) + kernel.rule_counters(sock, layout.BRIDGE)
            for comment, packets, size in readings:
                tag = chains.tag_of_comment(comment)
                if tag:
                    before = totals.get(tag, (0, 0))
                    totals[tag] = (before[0] + packets, before[1] + size)
        return totals

    def forget(self) -> None:
        """Drop the memory: the next apply rebuilds."""
        self._known = None

    # --- writing -----------------------------------------------------------------

    def _rebuild(self, sock: nl.Netlink, wanted: Desired, stats: ApplyStats) -> None:
        batch = nl.Batch()
        layout.skeleton(batch, state_dir=self.state_dir or "", log=self.log)
        self._sizes = {}
        for name in _most_used_first(wanted):
            spec, elements = wanted.sets[name]
            self._add_set(batch, spec, len(elements))
            if elements:
                obj.add_elements(batch, layout.INET, layout.TABLE, spec.name, elements)
        for name in wanted.chains:
            obj.add_chain(batch, layout.INET, layout.TABLE, name)
        for name, (family, chain) in wanted.chains.items():
            self._fill(batch, name, family, chain)
        layout.add_items(batch, wanted.items)
        self._commit(sock, batch)
        stats.kernel_read = True
        stats.transactions = 1
        stats.chains_written = len(wanted.chains)
        stats.rules_written = sum(len(chain.rules) for _, chain in wanted.chains.values())
        stats.sets_written = len(wanted.sets)
        stats.set_entries_written = sum(len(elements) for _, elements in wanted.sets.values())

    def _encoding(self, name: str, family: model.Family, chain: model.Chain) -> EncodedChain:
        """``chain``'s rules encoded, from the last write when it is unchanged."""
        known = self._encoded.get(name)
        if known is None or not known.holds(family, chain):
            known = self._encoded[name] = EncodedChain(name, family, chain)
        return known

    def _fill(self, batch: nl.Batch, name: str, family: model.Family, chain: model.Chain) -> None:
        obj.add_rule_messages(batch, layout.INET, name, self._encoding(name, family, chain).bodies)

    def _renewed_records(self, wanted: Desired, fingerprint: Fingerprint | None) -> set[str]:
        """Record keys whose file changed since the last write (the plugin may
        have reset their chains to podDefault)."""
        if fingerprint is None or fingerprint == self._fingerprint or self._fingerprint is None:
            return set()
        before = {entry[0]: entry[1:] for entry in self._fingerprint}
        changed = {entry[0] for entry in fingerprint if before.get(entry[0]) != entry[1:]}
        return {key for key in set(wanted.owners.values()) if f"{key}.json" in changed}

    def _add_set(self, batch: nl.Batch, spec: obj.SetSpec, count: int) -> None:
        """Add peer set ``spec`` for ``count`` elements: a hash set is sized
        (``obj.add_set``) with room to double; ``_outgrown`` tells when not."""
        size = 0 if spec.interval else max(SET_ROOM, 2 * count)
        obj.add_set(batch, layout.INET, layout.TABLE, spec, size=size)
        if size:
            self._sizes[spec.name] = size

    def _outgrown(self, wanted: Desired) -> bool:
        """Whether a hash set holds more elements than the kernel's was sized for."""
        sizes = self._sizes
        return any(
            len(elements) > sizes.get(name, len(elements))
            for name, (_, elements) in wanted.sets.items()
        )

    def _incremental(
        self, sock: nl.Netlink, wanted: Desired, fingerprint: Fingerprint | None, stats: ApplyStats
    ) -> bool:
        """Write what changed since ``_known``; False (nothing written) when a
        hash set outgrew its kernel size: only a rebuild can make it bigger."""
        known = self._known
        assert known is not None
        if self._outgrown(wanted):
            return False
        renewed = self._renewed_records(wanted, fingerprint)
        batch = nl.Batch()
        new_sets = [name for name in wanted.sets if name not in known.sets]
        for name in new_sets:
            spec, elements = wanted.sets[name]
            self._add_set(batch, spec, len(elements))
            obj.add_elements(batch, layout.INET, layout.TABLE, name, elements)
        for name, (spec, elements) in wanted.sets.items():
            if name in new_sets or known.sets[name][1] == elements:
                continue
            delta = wanted.deltas.get(name)
            if delta is not None and delta[0] is known.sets[name][1]:
                _, gone, added = delta
                obj.destroy_elements(batch, layout.INET, layout.TABLE, name, gone)
                obj.add_elements(batch, layout.INET, layout.TABLE, name, added)
                stats.set_entries_written += len(gone) + len(added)
                continue
            self._update_set(batch, spec, known.sets[name][1], elements, stats)
        stats.sets_written = len(new_sets)
        changed = [
            name
            for name, (family, chain) in wanted.chains.items()
            if name not in known.chains
            or known.chains[name] != (family, chain)
            or wanted.owners.get(name) in renewed
        ]
        for name in changed:  # created if missing (no-op if there), then emptied
            obj.add_chain(batch, layout.INET, layout.TABLE, name)
            obj.flush_chain(batch, layout.INET, layout.TABLE, name)
        for name in changed:
            family, chain = wanted.chains[name]
            self._fill(batch, name, family, chain)
            stats.rules_written += len(chain.rules)
        stats.chains_written = len(changed)
        gone_items = known.items - wanted.items
        new_items = wanted.items - known.items
        layout.remove_items(batch, gone_items)
        layout.add_items(batch, new_items)
        stale = [name for name in known.chains if name not in wanted.chains]
        stale.sort(key=lambda name: name.split("-")[1] not in ("I", "E"))
        for name in stale:
            obj.destroy_chain(batch, layout.INET, layout.TABLE, name)
        stats.chains_deleted = len(stale)
        gone_sets = [name for name in known.sets if name not in wanted.sets]
        for name in gone_sets:
            obj.destroy_set(batch, layout.INET, layout.TABLE, name)
            self._sizes.pop(name, None)
        stats.sets_destroyed = len(gone_sets)
        if len(batch):
            self._commit(sock, batch)
            stats.transactions = 1
        return True

    @staticmethod
    def _update_set(
        batch: nl.Batch,
        spec: obj.SetSpec,
        before: list[obj.Element],
        after: list[obj.Element],
        stats: ApplyStats,
    ) -> None:
        if spec.interval:
            obj.flush_set(batch, layout.INET, layout.TABLE, spec.name)
            obj.add_elements(batch, layout.INET, layout.TABLE, spec.name, after)
            stats.set_entries_written += len(after)
            return
        old = dict(zip(map(_KEY, before), before, strict=True))
        new = dict(zip(map(_KEY, after), after, strict=True))
        gone = [old[key] for key in sorted(old.keys() - new.keys())]
        added = [new[key] for key in sorted(new.keys() - old.keys())]
        obj.destroy_elements(batch, layout.INET, layout.TABLE, spec.name, gone)
        obj.add_elements(batch, layout.INET, layout.TABLE, spec.name, added)
        stats.set_entries_written += len(gone) + len(added)

    # --- checking ----------------------------------------------------------------

    def verify(self) -> list[str]:
        """How the kernel differs from what was last written ([] when it
        does not, or when nothing was written yet)."""
        if self._known is None:
            return []
        with nl.Netlink() as sock:
            return self._differences(sock, self._known)

    def differences(
        self,
        desired: Mapping[model.Family, model.FamilyState],
        *,
        endpoints: Sequence[model.Endpoint] = (),
    ) -> list[str]:
        """How the kernel differs from ``desired`` ([] when it holds it);
        reads only, remembers nothing (the lab's "programmed yet?" check)."""
        with nl.Netlink() as sock:
            return self._differences(sock, render(desired, endpoints))

    def _digests(self, name: str, family: model.Family, chain: model.Chain) -> list[bytes]:
        """The digests of ``chain``'s rules (encoded again only when it is not
        the chain last written under ``name``; remembered only by writes)."""
        known = self._encoded.get(name)
        if known is not None and known.holds(family, chain):
            return known.digests
        return EncodedChain(name, family, chain).digests

    def _matches(self, sock: nl.Netlink) -> bool:
        return self._known is not None and not self._differences(sock, self._known)

    def _differences(self, sock: nl.Netlink, known: Desired) -> list[str]:
        exists, version, _ = ops.table_state(sock)
        if not exists:
            return ["podwall's tables are missing"]
        if version != layout.VERSION:
            return [f"table layout {version!r} is not {layout.VERSION!r}"]
        found: list[str] = []
        digests = kernel.rule_digests(sock)
        bridge_digests = kernel.rule_digests(sock, layout.BRIDGE)
        skeleton = layout.skeleton_rules(self.log)
        for (table, name), rules in skeleton.items():
            have = (digests if table == layout.INET else bridge_digests).pop(name, [])
            if have != [layout.rule_digest(e) for e, _ in rules]:
                found.append(f"chain {name} differs")
        present = set(kernel.chains(sock)) - {
            name for table, name in skeleton if table == layout.INET
        }
        for name in sorted(present ^ set(known.chains)):
            found.append(f"chain {name} is {'extra' if name in present else 'missing'}")
        for name, (family, chain) in known.chains.items():
            if name in present and digests.get(name, []) != self._digests(name, family, chain):
                found.append(f"chain {name} differs")
        for name, (_, elements) in known.sets.items():
            if translate.element_keys(
                kernel.elements(sock, layout.INET, name)
            ) != translate.element_keys(elements):
                found.append(f"set {name} differs")
        by_set: dict[tuple[int, str], set[bytes]] = {}
        for table, set_name, key, _ in known.items:
            by_set.setdefault((table, set_name), set()).add(key)
        for table, specs in ((layout.INET, layout.INET_SETS), (layout.BRIDGE, layout.BRIDGE_SETS)):
            for spec in specs:
                keys = {element.key for element in kernel.elements(sock, table, spec.name)}
                if keys != by_set.get((table, spec.name), set()):
                    found.append(f"identity set {spec.name} differs")
        return found
