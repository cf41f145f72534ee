"""What kind of link an interface of this node is, asked over rtnetlink.

``kind(name)`` answers the link's ``IFLA_INFO_KIND`` (``veth``, ``bridge``,
``ifb``…) and whether its peer lives in another network namespace
(``IFLA_LINK_NETNSID``): the host end of a pod's veth.  sysfs cannot tell a
veth from an ``ifb`` (the ``bandwidth`` plugin's) reliably: their
``iflink``/``ifindex`` may coincide across namespaces.

Reads only; one request per call, with the built-in ``_socket`` module.
"""

from __future__ import annotations

import _socket
import sys

NETLINK_ROUTE = 0
RTM_GETLINK = 18
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2
IFLA_IFNAME, IFLA_LINKINFO, IFLA_INFO_KIND, IFLA_LINK_NETNSID = 3, 18, 1, 37
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


def kind(name: str) -> tuple[str, bool]:
    """(link kind or '', whether its peer is in another namespace) of
    ``name``; ('', False) when there is no such interface."""
    raw = name.encode() + b"\0"
    attr = (4 + len(raw)).to_bytes(2, ORDER) + IFLA_IFNAME.to_bytes(2, ORDER) + raw
    attr += b"\0" * (-len(attr) % 4)
    body = bytes(16) + attr  # struct ifinfomsg, then the name
    header = (16 + len(body)).to_bytes(4, ORDER) + RTM_GETLINK.to_bytes(2, ORDER)
    header += (NLM_F_REQUEST | NLM_F_ACK).to_bytes(2, ORDER) + (1).to_bytes(4, ORDER) + bytes(4)
    sock = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW, NETLINK_ROUTE)
    try:
        sock.send(header + body)
        data = sock.recv(65536)
    finally:
        sock.close()
    if len(data) < 16 or int.from_bytes(data[4:6], ORDER) == NLMSG_ERROR:
        return "", False
    attributes = _attrs(data, 16 + 16)
    info = _attrs(attributes.get(IFLA_LINKINFO, b""), 0)
    link_kind = info.get(IFLA_INFO_KIND, b"").split(b"\0", 1)[0].decode()
    return link_kind, IFLA_LINK_NETNSID in attributes
