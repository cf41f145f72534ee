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

    def _add(self, identity: str, kind: model.IPSetKind, entries: set[str]) -> str:
        name = names.hashed_name("S", f"{self.family}|{kind}|{identity}")
        if name not in self.sets:
            self.sets[name] = model.IPSet(name, kind, self.family, tuple(sorted(entries)))
        return name

    def peer(self, peer: PeerMatch) -> SetRef:
        """The set holding ``peer`` in this family ("" for any peer)."""
        if peer.kind == "any":
            return ""
        if peer.pods is not None:
            ips = {self.index.pods[n].ip(self.family) for n in peer.pods}
            return self._add(peer.key, "hash:ip", {ip for ip in ips if ip})
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
        entries = set()
        for number in self.index.by_port_name.get(port.name, ()):
            pod = self.index.pods[number]
            ip = pod.ip(self.family)
            if ip is None or not peer.matches(number, ip):
                continue
            for named in pod.named(port.name):
                if port.protocol in (None, named.protocol):
                    entries.add(f"{ip},{named.protocol.lower()}:{named.port}")
        identity = f"{peer.key} port {port.protocol or '*'}/{port.name}"
        return self._add(identity, "hash:ip,port", entries)
