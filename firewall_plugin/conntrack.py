"""Forget the conntrack entries of a pod's addresses (at ADD and DEL).

A conntrack entry outlives its pod: a new pod that gets the same IP would
receive the old flow's packets as ESTABLISHED until the entry expires (UDP
120 s, TCP established 5 days), past any policy.  ``forget(ips)`` deletes
every entry whose original or reply source or destination is one of ``ips``,
in this network namespace, over ctnetlink: one filtered dump per address and
direction (``CTA_FILTER``, Linux 5.10+), then one delete per entry found.

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
CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_ZONE, CTA_FILTER = 1, 2, 18, 25
CTA_TUPLE_IP = 1
CTA_FILTER_ORIG_FLAGS, CTA_FILTER_REPLY_FLAGS = 1, 2
FILTER_IP_SRC, FILTER_IP_DST = 1 << 0, 1 << 1
AF_INET, AF_INET6 = 2, 10
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


def _matching(sock: netlink.Netlink, family: int, address: bytes) -> list[bytes]:
    """The original tuple (with zone) of every entry naming ``address``."""
    found: dict[bytes, None] = {}
    for reply in (False, True):
        for source in (True, False):
            body = _tuple(CTA_TUPLE_REPLY if reply else CTA_TUPLE_ORIG, address, source=source)
            body += _filter(reply=reply, source=source)
            for entry in sock.request(_CT | CT_GET, family, body, dump=True):
                orig = entry.attributes.get(CTA_TUPLE_ORIG)
                if orig is None:
                    continue
                key = netlink.nest(CTA_TUPLE_ORIG, orig)
                if CTA_ZONE in entry.attributes:
                    key += netlink.attr(CTA_ZONE, entry.attributes[CTA_ZONE])
                found[key] = None
    return list(found)


def forget(ips: Iterable[str]) -> int:
    """Delete the conntrack entries of ``ips`` (``IP[/prefix]``); returns how
    many went.  An entry that vanished meanwhile is no error."""
    removed = 0
    with netlink.Netlink() as sock:
        for ip in ips:
            raw = addresses.packed(ip)
            family = AF_INET6 if len(raw) == 16 else AF_INET
            for entry in _matching(sock, family, raw):
                try:
                    sock.request(_CT | CT_DELETE, family, entry)
                except BackendError as exc:
                    if str(errno.ENOENT) not in str(exc):
                        raise
                removed += 1
    return removed
