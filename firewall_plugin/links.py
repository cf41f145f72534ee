"""What kind of link an interface of this node is, asked over rtnetlink.

``describe(name)`` answers the link's ``IFLA_INFO_KIND`` (``veth``,
``bridge``, ``ifb``…), whether its peer lives in another network namespace
(``IFLA_LINK_NETNSID``: the host end of a pod's veth) and what it is
enslaved to (``IFLA_MASTER``); ``bridge_named(index)`` the name of that
master when it is a bridge.  Not sysfs: it cannot tell a veth from an
``ifb`` (the ``bandwidth`` plugin's) reliably (their ``iflink``/``ifindex``
may coincide across namespaces), and
``/sys/class/net`` shows the network namespace of whoever mounted it: a
runtime that enters the node's namespace with ``setns`` alone (podman under
``nsenter --net``) would read another namespace's links there.

Reads only; one request per call, with the built-in ``_socket`` module.
"""

from __future__ import annotations

import _socket
import sys

NETLINK_ROUTE = 0
RTM_GETLINK = 18
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2
IFLA_IFNAME, IFLA_MASTER, IFLA_LINKINFO, IFLA_INFO_KIND, IFLA_LINK_NETNSID = 3, 10, 18, 1, 37
ORDER = sys.byteorder


def _attrs(data: bytes, offset: int) -> dict[int, bytes]:
    found = {}
    while offset + 4 <= len(data):
        length = int.from_bytes(data[offset : offset + 2], ORDER)
        if length < 4:
            break
        kind = int.from_bytes(data[offset + 2 : offset + 4], ORDER) & 0x3FFF
        found[kind] = data[offset + 4 : offset + length]
        offset += (length + 3) & ~3
    return found


def _getlink(name: str = "", index: int = 0) -> dict[int, bytes] | None:
    """The attributes of the link called ``name`` (or with ``index``), None
    when there is none."""
    if name:
        raw = name.encode() + b"\0"
        attr = (4 + len(raw)).to_bytes(2, ORDER) + IFLA_IFNAME.to_bytes(2, ORDER) + raw
        attr += b"\0" * (-len(attr) % 4)
    else:
        attr = b""
    # struct ifinfomsg: family, pad, type, index, flags, change
    body = bytes(4) + index.to_bytes(4, ORDER, signed=True) + bytes(8) + attr
    header = (16 + len(body)).to_bytes(4, ORDER) + RTM_GETLINK.to_bytes(2, ORDER)
    header += (NLM_F_REQUEST | NLM_F_ACK).to_bytes(2, ORDER) + (1).to_bytes(4, ORDER) + bytes(4)
    sock = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW, NETLINK_ROUTE)
    try:
        sock.send(header + body)
        data = sock.recv(65536)
    finally:
        sock.close()
    if len(data) < 16 or int.from_bytes(data[4:6], ORDER) == NLMSG_ERROR:
        return None
    return _attrs(data, 16 + 16)


def _kind_of(attributes: dict[int, bytes]) -> str:
    info = _attrs(attributes.get(IFLA_LINKINFO, b""), 0)
    return info.get(IFLA_INFO_KIND, b"").split(b"\0", 1)[0].decode()


def describe(name: str) -> tuple[str, bool, int]:
    """(link kind or '', whether its peer is in another namespace, the index
    of the link it is enslaved to or 0) of ``name``; ('', False, 0) when there
    is no such interface.  One request."""
    attributes = _getlink(name) if name else None
    if attributes is None:
        return "", False, 0
    master = attributes.get(IFLA_MASTER, b"")
    index = int.from_bytes(master[:4], ORDER) if len(master) >= 4 else 0
    return _kind_of(attributes), IFLA_LINK_NETNSID in attributes, index


def bridge_named(index: int) -> str:
    """The name of the bridge with ``index``, '' when it is no bridge (a
    bond, for example) or there is none."""
    found = _getlink(index=index) if index else None
    if found is None or _kind_of(found) != "bridge":
        return ""
    return found.get(IFLA_IFNAME, b"").split(b"\0", 1)[0].decode()
