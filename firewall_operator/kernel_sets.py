"""The ipsets a node's chains match against, built from plan peers.

One set per distinct peer (its canonical key) and family: ``hash:ip`` for pod
peers (their IPs), ``hash:net`` for network peers (CIDRs plus ``nomatch``
entries for ``except``; ``0.0.0.0/0`` and ``::/0`` become two /1 halves because
ipset refuses prefix 0, and a ``nomatch`` entry only takes effect under a less
specific entry of the same set, which ``except`` inside ``cidr`` guarantees),
and ``hash:ip,port`` for egress named ports (peer IP, protocol and the port
number the name resolves to on that peer).  Set size follows the cluster; the
rules that use a set do not.

Pure: no I/O.
"""

from __future__ import annotations

from firewall_operator import cidrs
from firewall_operator.index import ClusterIndex
from firewall_operator.plan import PeerMatch, PortMatch
from firewall_plugin import model, names

#: ``None``: the peer matches nothing in this family; ``""``: it matches anything.
SetRef = str | None


class SetBuilder:
    """Creates sets on first use and remembers them by name."""

    def __init__(self, index: ClusterIndex, family: model.Family) -> None:
        self.index = index
        self.family = family
        self.sets: dict[str, model.IPSet] = {}

        self._refs: dict[str, SetRef] = {}

    def _add(self, identity: str, kind: model.IPSetKind, entries: set[str]) -> str:
        name = names.hashed_name("S", f"{self.family}|{kind}|{identity}")
        self.sets[name] = model.IPSet(name, kind, self.family, tuple(sorted(entries)))
        return name

    def peer(self, peer: PeerMatch) -> SetRef:
        """The set holding ``peer`` in this family ("" for any peer)."""
        if peer.key not in self._refs:
            self._refs[peer.key] = self._peer(peer)
        return self._refs[peer.key]

    def _peer(self, peer: PeerMatch) -> SetRef:
        if peer.kind == "any":
            return ""
        if peer.pods is not None:
            ips = self.index.ips[self.family]
            return self._add(peer.key, "hash:ip", {ip for n in peer.pods if (ip := ips[n])})
        nets = [net for net in peer.nets if cidrs.family(net) == self.family]
        if not nets:
            return None
        entries = {entry for net in nets for entry in cidrs.set_entries(net)}
        entries |= {f"{net} nomatch" for net in peer.excepts if cidrs.family(net) == self.family}
        return self._add(peer.key, "hash:net", entries)

    def named_port(self, peer: PeerMatch, port: PortMatch) -> str:
        """``hash:ip,port`` of every pod that ``peer`` matches and that has the
        named port (its IP, protocol and number)."""
        assert port.name is not None
        identity = f"{peer.key} port {port.protocol or '*'}/{port.name}"
        if identity not in self._refs:
            self._refs[identity] = self._add(identity, "hash:ip,port", self._named(peer, port))
        return self._refs[identity] or ""

    def _named(self, peer: PeerMatch, port: PortMatch) -> set[str]:
        assert port.name is not None
        entries = set()
        ips = self.index.ips[self.family]
        for number in self.index.by_port_name.get(port.name, ()):
            ip = ips[number]
            if ip is None or not peer.matches(number, ip):
                continue
            for named in self.index.pods[number].named(port.name):
                if port.protocol in (None, named.protocol):
                    entries.add(f"{ip},{named.protocol.lower()}:{named.port}")
        return entries
