"""Forget the conntrack entries of a pod's addresses (at ADD and DEL).

A conntrack entry outlives its pod: a new pod that gets the same IP would
receive the old flow's packets as ESTABLISHED until the entry expires (UDP
120 s, TCP established 5 days), past any policy.  ``forget(ips)`` deletes
every entry whose original or reply source or destination is one of ``ips``,
in this network namespace, over ctnetlink, then one delete per entry found.

Every dump walks the kernel's whole conntrack hash table, which all network
namespaces share (~10 ms for 262,144 buckets here), so the number of dumps
is what ADD and DEL pay.  How the entries are found depends on how many this
namespace holds (``nf_conntrack_count``): none, nothing to do; up to ``FEW``,
one dump of them all, matched here; more, for each IPv4 address one dump per
direction and end filtered in the kernel (``CTA_FILTER``, Linux 5.10+), and
one dump of the IPv6 entries matched here: the kernel's IPv6 address filter
cannot be trusted (on Linux 6.18 it returns the entries that do *not* match).
Whatever a dump returns is matched here again before anything is deleted.

Changes only conntrack entries of the given addresses.
"""

from __future__ import annotations

import errno

from firewall_plugin import addresses
from firewall_plugin.errors import BackendError
from firewall_plugin.nft import netlink

TYPE_CHECKING = False  # typing costs the CNI start-up ~4 ms (see values.py)
if TYPE_CHECKING:
    from collections.abc import Iterable

CT_GET, CT_DELETE = 1, 2
#: up to this many entries in the namespace, one unfiltered dump is cheaper
#: than four filtered ones per address (parsing costs ~15 us per entry)
FEW = 1000
COUNT_FILE = "/proc/sys/net/netfilter/nf_conntrack_count"
CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_ZONE, CTA_FILTER = 1, 2, 18, 25
CTA_TUPLE_IP = 1
CTA_FILTER_ORIG_FLAGS, CTA_FILTER_REPLY_FLAGS = 1, 2
FILTER_IP_SRC, FILTER_IP_DST = 1 << 0, 1 << 1
AF_UNSPEC, AF_INET, AF_INET6 = 0, 2, 10
_CT = netlink.NFNL_SUBSYS_CTNETLINK << 8


def _tuple(kind: int, address: bytes, *, source: bool) -> bytes:
    """A tuple attribute naming only one address (the rest is filtered out)."""
    v6 = len(address) == 16
    ip_attr = (3 if source else 4) if v6 else (1 if source else 2)
    return netlink.nest(kind, netlink.nest(CTA_TUPLE_IP, netlink.attr(ip_attr, address)))


def _flags(value: int) -> bytes:
    return value.to_bytes(4, netlink.BYTEORDER)


def _filter(*, reply: bool, source: bool) -> bytes:
    flag = _flags(FILTER_IP_SRC if source else FILTER_IP_DST)
    none = _flags(0)
    orig, rep = (none, flag) if reply else (flag, none)
    return netlink.nest(
        CTA_FILTER,
        netlink.attr(CTA_FILTER_ORIG_FLAGS, orig),
        netlink.attr(CTA_FILTER_REPLY_FLAGS, rep),
    )


def _addresses(tuple_attr: bytes) -> tuple[bytes, ...]:
    """The source and destination addresses in a CTA_TUPLE_* attribute."""
    ip = netlink.attrs(netlink.attrs(tuple_attr).get(CTA_TUPLE_IP, b""))
    return tuple(value for key, value in ip.items() if key in (1, 2, 3, 4))


def names(entry: netlink.Reply, wanted: set[bytes]) -> bool:
    """Whether the entry's original or reply tuple names one of ``wanted``."""
    return any(
        address in wanted
        for kind in (CTA_TUPLE_ORIG, CTA_TUPLE_REPLY)
        for address in _addresses(entry.attributes.get(kind, b""))
    )


def _key(entry: netlink.Reply) -> bytes | None:
    """What a delete names: the original tuple (and the zone)."""
    orig = entry.attributes.get(CTA_TUPLE_ORIG)
    if orig is None:
        return None
    key = netlink.nest(CTA_TUPLE_ORIG, orig)
    if CTA_ZONE in entry.attributes:
        key += netlink.attr(CTA_ZONE, entry.attributes[CTA_ZONE])
    return key


def _dumps(addresses_: set[bytes], count: int) -> list[tuple[int, bytes]]:
    """(family, request body) of every dump needed (see the module docstring)."""
    if count <= FEW:
        return [(AF_UNSPEC, b"")]
    dumps = []
    for address in sorted(a for a in addresses_ if len(a) == 4):
        for reply in (False, True):
            for source in (True, False):
                body = _tuple(CTA_TUPLE_REPLY if reply else CTA_TUPLE_ORIG, address, source=source)
                dumps.append((AF_INET, body + _filter(reply=reply, source=source)))
    if any(len(a) == 16 for a in addresses_):
        dumps.append((AF_INET6, b""))
    return dumps


def _count() -> int:
    """Entries in this namespace's conntrack table (-1: unknown)."""
    try:
        with open(COUNT_FILE, "rb") as handle:
            return int(handle.read())
    except (OSError, ValueError):
        return -1


def _matching(sock: netlink.Netlink, wanted: set[bytes], count: int) -> dict[bytes, int]:
    """Delete key -> family of every entry naming one of ``wanted``."""
    found: dict[bytes, int] = {}
    for family, body in _dumps(wanted, count if count >= 0 else FEW + 1):
        for raw in sock.request_raw(_CT | CT_GET, family, body, dump=True):
            if not any(address in raw for address in wanted):
                continue  # the common case of a whole-table dump, without parsing
            entry = netlink.Reply(raw)
            key = _key(entry)
            if key is not None and names(entry, wanted):
                found[key] = entry.family
    return found


def forget(ips: Iterable[str], sock: netlink.Netlink | None = None) -> int:
    """Delete the conntrack entries of ``ips`` (``IP[/prefix]``); returns how
    many went.  An entry that vanished meanwhile is no error.  ``sock``: a
    netfilter socket of the caller's (left open), else one of its own."""
    wanted = {addresses.packed(ip) for ip in ips}
    count = _count()
    if not wanted or count == 0:
        return 0
    if sock is None:
        with netlink.Netlink() as own:
            return _delete(own, wanted, count)
    return _delete(sock, wanted, count)


def _delete(sock: netlink.Netlink, wanted: set[bytes], count: int) -> int:
    removed = 0
    for key, family in _matching(sock, wanted, count).items():
        try:
            sock.request(_CT | CT_DELETE, family, key)
        except BackendError as exc:
            if str(errno.ENOENT) not in str(exc):
                raise
        removed += 1
    return removed
