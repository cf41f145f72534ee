"""The ipsets a node's chains match against, built from plan peers.

One set per distinct peer (its canonical key) and family: ``hash:ip`` for pod
peers (their IPs), ``hash:net`` for network peers (CIDRs plus ``nomatch``
entries for ``except``; ``0.0.0.0/0`` and ``::/0`` become two /1 halves because
ipset refuses prefix 0, and a ``nomatch`` entry only takes effect under a less
specific entry of the same set, which ``except`` inside ``cidr`` guarantees),
and ``hash:ip,port`` for egress named ports (peer IP, protocol and the port
number the name resolves to on that peer).  Set size follows the cluster; the
rules that use a set do not.

``SetNames`` names the sets while chains are built (the name derives from the
family, kind and peer identity only) and remembers what each must hold;
``SetContents`` fills them from the index.  It keeps the sets of its previous
``build`` and reuses one when the changes since then cannot touch it: a
``hash:net`` set never changes, a pod set changes only when its members do or
when a member's IP or ports change, a named-port set of a network peer when any
pod's IP or ports change.

Pure: no I/O.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass

from firewall_operator import cidrs, cluster
from firewall_operator.index import Changes, ClusterIndex
from firewall_operator.plan import PeerMatch, PortMatch
from firewall_plugin import model, names

#: at most this many pods joining or leaving a set: it is patched, not rebuilt
MOVE_LIMIT = 64

#: how the sets each ``SetContents`` patched in its last build came from
#: their previous build, by ``id`` of the new set (held here with it, so
#: the id stays its own): (new set, previous set, entries gone, entries
#: added); a build forgets the moves of the build before
_MOVES: dict[int, tuple[model.IPSet, model.IPSet, tuple[str, ...], tuple[str, ...]]] = {}


def moved(ipset: model.IPSet) -> tuple[model.IPSet, tuple[str, ...], tuple[str, ...]] | None:
    """(previous set, entries gone, entries added) when ``ipset`` is a patch
    of the previous set by ``SetContents``; None when it is not known to be."""
    found = _MOVES.get(id(ipset))
    return None if found is None or found[0] is not ipset else found[1:]


#: ``None``: the peer matches nothing in this family; ``""``: it matches anything.
SetRef = str | None


@dataclass(frozen=True, slots=True)
class SetSpec:
    """What a named set holds: ``peer``'s addresses (for ``hash:ip,port``,
    those of its pods that declare ``port``)."""

    name: str
    kind: model.IPSetKind
    peer: PeerMatch
    port: PortMatch | None = None


class SetNames:
    """Names sets on first use; ``requested`` collects every name handed out
    (the caller clears it to learn what one endpoint uses)."""

    def __init__(self, family: model.Family) -> None:
        self.family = family
        self.specs: dict[str, SetSpec] = {}
        self.requested: dict[str, None] = {}
        self._refs: dict[str, SetRef] = {}

    def _add(
        self, identity: str, kind: model.IPSetKind, peer: PeerMatch, port: PortMatch | None
    ) -> str:
        name = names.hashed_name("S", f"{self.family}|{kind}|{identity}")
        self.specs[name] = SetSpec(name, kind, peer, port)
        return name

    def peer(self, peer: PeerMatch) -> SetRef:
        """The set holding ``peer`` in this family ("" for any peer)."""
        if peer.key not in self._refs:
            self._refs[peer.key] = self._peer(peer)
        ref = self._refs[peer.key]
        if ref:
            self.requested[ref] = None
        return ref

    def _peer(self, peer: PeerMatch) -> SetRef:
        if peer.kind == "any":
            return ""
        if peer.pods is not None:
            return self._add(peer.key, "hash:ip", peer, None)
        if not any(cidrs.family(net) == self.family for net in peer.nets):
            return None
        return self._add(peer.key, "hash:net", peer, None)

    def named_port(self, peer: PeerMatch, port: PortMatch) -> str:
        """``hash:ip,port`` of every pod that ``peer`` matches and that has the
        named port (its IP, protocol and number)."""
        assert port.name is not None
        identity = f"{peer.key} port {port.protocol or '*'}/{port.name}"
        if identity not in self._refs:
            self._refs[identity] = self._add(identity, "hash:ip,port", peer, port)
        ref = self._refs[identity] or ""
        self.requested[ref] = None
        return ref

    def keep(self, used: Iterable[str]) -> None:
        """Forget the sets not in ``used`` (their peers may never come back)."""
        wanted = set(used)
        self.specs = {name: spec for name, spec in self.specs.items() if name in wanted}
        self._refs = {k: ref for k, ref in self._refs.items() if not ref or ref in wanted}


def _shape(pod: cluster.Pod | None, family: model.Family) -> object:
    return None if pod is None else (pod.ip(family), pod.ports, pod.host_network)


class SetContents:
    """The entries of one family's sets, reusing the previous build's."""

    def __init__(self, family: model.Family) -> None:
        self.family = family
        self._cache: dict[str, tuple[frozenset[int] | None, model.IPSet]] = {}
        self._moves: list[int] = []  # the keys of this build's _MOVES

    def build(
        self, index: ClusterIndex, specs: Iterable[SetSpec], changes: Changes | None
    ) -> dict[str, model.IPSet]:
        """The sets of ``specs`` for ``index``'s snapshot; ``changes`` are the
        pods changed since the previous build (None: unknown, build all)."""
        shaped = None
        if changes is not None:
            shaped = {
                n
                for n, (o, p) in changes.items()
                if _shape(o, self.family) != _shape(p, self.family)
            }
        cache, self._cache = self._cache, {}
        for number in self._moves:
            _MOVES.pop(number, None)
        self._moves = []
        out = {}
        for spec in specs:
            selection = spec.peer.selection
            members = spec.peer.pods if selection is None else index.members(selection)
            hit = cache.get(spec.name)
            if hit is not None and shaped is not None and _still(hit[0], members, spec, shaped):
                ipset = hit[1]
            else:
                ipset = self._moved(index, spec, hit, members, shaped) or self._make(
                    index, spec, members
                )
            out[spec.name] = ipset
            self._cache[spec.name] = (members, ipset)
        return out

    def _make(
        self, index: ClusterIndex, spec: SetSpec, members: frozenset[int] | None
    ) -> model.IPSet:
        peer = spec.peer
        if spec.kind == "hash:ip,port":
            entries = self._named(index, peer, spec.port, members)
        elif members is not None:
            ips = index.ips[self.family]
            entries = {ips[n] for n in members if n in ips}
        else:
            nets = [net for net in peer.nets if cidrs.family(net) == self.family]
            entries = {entry for net in nets for entry in cidrs.set_entries(net)}
            entries |= {
                f"{net} nomatch" for net in peer.excepts if cidrs.family(net) == self.family
            }
        return model.IPSet(spec.name, spec.kind, self.family, tuple(sorted(entries)))

    def _moved(
        self,
        index: ClusterIndex,
        spec: SetSpec,
        hit: tuple[frozenset[int] | None, model.IPSet] | None,
        members: frozenset[int] | None,
        shaped: set[int] | None,
    ) -> model.IPSet | None:
        """The set of a pod peer whose members changed, from its previous
        build: the entries of the pods that left taken out, of those that
        joined put in (O(changes), not O(members)); None when that is not
        sure to be right (no previous build, many changes, a changed pod's
        address or ports, an address another pod also holds)."""
        before = None if hit is None else hit[0]
        if hit is None or before is None or shaped is None or members is None:
            return None
        previous = hit[1]
        left, joined = before - members, members - before
        if len(left) + len(joined) > MOVE_LIMIT or not (
            before.isdisjoint(shaped) and members.isdisjoint(shaped)
        ):
            return None
        holders = index.ip_holders[self.family]
        ips = index.ips[self.family]
        if any(holders.get(ips.get(n, ""), 0) > 1 for n in left | joined):
            return None
        entries = list(previous.entries)  # sorted
        gone, added = [], []
        for n in left:
            for entry in self._entries(index, spec, n):
                at = bisect.bisect_left(entries, entry)
                if at < len(entries) and entries[at] == entry:
                    del entries[at]
                    gone.append(entry)
        for n in joined:
            for entry in self._entries(index, spec, n):
                at = bisect.bisect_left(entries, entry)
                if at == len(entries) or entries[at] != entry:
                    entries.insert(at, entry)
                    added.append(entry)
        if not gone and not added:
            return previous
        ipset = model.IPSet(spec.name, spec.kind, self.family, tuple(entries))
        _MOVES[id(ipset)] = (ipset, previous, tuple(sorted(gone)), tuple(sorted(added)))
        self._moves.append(id(ipset))
        return ipset

    def _entries(self, index: ClusterIndex, spec: SetSpec, number: int) -> list[str]:
        """What pod ``number`` puts into pod-peer set ``spec`` in this family."""
        if spec.kind != "hash:ip,port":
            ip = index.ips[self.family].get(number)
            return [] if ip is None else [ip]
        assert spec.port is not None and spec.port.name is not None
        wanted = spec.port.protocol
        return [
            entry
            for protocol, entry in index.port_entries(self.family, spec.port.name, number)
            if wanted is None or wanted == protocol
        ]

    def _named(
        self,
        index: ClusterIndex,
        peer: PeerMatch,
        port: PortMatch | None,
        members: frozenset[int] | None,
    ) -> set[str]:
        assert port is not None and port.name is not None
        candidates = index.with_port(port.name)
        if members is not None:
            candidates &= members
        elif peer.nets:
            candidates &= index.pods_in_nets(self.family, peer.nets, peer.excepts)
        entries = set()
        wanted, family, name = port.protocol, self.family, port.name
        for number in candidates:
            for protocol, entry in index.port_entries(family, name, number):
                if wanted is None or wanted == protocol:
                    entries.add(entry)
        return entries


def _still(
    before: frozenset[int] | None, members: frozenset[int] | None, spec: SetSpec, shaped: set[int]
) -> bool:
    """Is a set built with ``before`` still right after changes ``shaped``?"""
    if members is not None:
        return (before is members or before == members) and members.isdisjoint(shaped)
    return spec.kind == "hash:net" or not shaped
