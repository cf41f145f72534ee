"""What kind of link an interface of this node is, asked over rtnetlink.

``inspect(name)`` answers the link's ``IFLA_INFO_KIND`` (``veth``,
``bridge``, ``ifb``…), the namespace id its peer lives in
(``IFLA_LINK_NETNSID``: the host end of a pod's veth) and the peer's index
there, and what it is enslaved to (``IFLA_MASTER``); ``bridge_named(index)``
the name of that master when it is a bridge.  Not sysfs: it cannot tell a veth from an
``ifb`` (the ``bandwidth`` plugin's) reliably (their ``iflink``/``ifindex``
may coincide across namespaces), and
``/sys/class/net`` shows the network namespace of whoever mounted it: a
runtime that enters the node's namespace with ``setns`` alone (podman under
``nsenter --net``) would read another namespace's links there.

``peer_link_local`` asks for a veth peer's IPv6 link-local address in the
pod's namespace from the node's (``*_TARGET_NETNSID``, Linux 4.20+).

Reads only; one or two requests per call, with the built-in ``_socket`` module.
"""

from __future__ import annotations

import _socket
import sys

NETLINK_ROUTE = 0
RTM_GETLINK, RTM_GETADDR = 18, 22
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 1, 4, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
IFLA_IFNAME, IFLA_LINK, IFLA_MASTER, IFLA_LINKINFO, IFLA_INFO_KIND = 3, 5, 10, 18, 1
IFLA_LINK_NETNSID, IFLA_TARGET_NETNSID = 37, 46
IFA_ADDRESS, IFA_TARGET_NETNSID = 1, 10
AF_INET6, RT_SCOPE_LINK = 10, 253
SOL_NETLINK, NETLINK_GET_STRICT_CHK = 270, 12
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


def _attr(kind: int, payload: bytes) -> bytes:
    attr = (4 + len(payload)).to_bytes(2, ORDER) + kind.to_bytes(2, ORDER) + payload
    return attr + b"\0" * (-len(attr) % 4)


def _ask(msg_type: int, body: bytes, *, dump: bool = False) -> list[bytes]:
    """The kernel's answers (NLMSG_ERROR included, not NLMSG_DONE) to one
    request, with strict checking (the kernel then honours a dump's
    attributes, ``*_TARGET_NETNSID`` among them; Linux 4.20+)."""
    flags = NLM_F_REQUEST | (NLM_F_DUMP if dump else NLM_F_ACK)
    header = (16 + len(body)).to_bytes(4, ORDER) + msg_type.to_bytes(2, ORDER)
    header += flags.to_bytes(2, ORDER) + (1).to_bytes(4, ORDER) + bytes(4)
    sock = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW, NETLINK_ROUTE)
    answers: list[bytes] = []
    try:
        sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
        sock.send(header + body)
        while True:
            data = sock.recv(65536)
            offset = 0
            while offset + 16 <= len(data):
                length = int.from_bytes(data[offset : offset + 4], ORDER)
                kind = int.from_bytes(data[offset + 4 : offset + 6], ORDER)
                if length < 16 or kind == NLMSG_DONE:
                    return answers
                answers.append(data[offset : offset + length])
                if kind == NLMSG_ERROR or not dump:
                    return answers
                offset += (length + 3) & ~3
            if not data:
                return answers
    finally:
        sock.close()


def _getlink(name: str = "", index: int = 0, *, nsid: int = -1) -> dict[int, bytes] | None:
    """The attributes of the link called ``name`` (or with ``index``), in the
    namespace this one knows as ``nsid`` when given; None when there is none."""
    attr = _attr(IFLA_IFNAME, name.encode() + b"\0") if name else b""
    if nsid >= 0:
        attr += _attr(IFLA_TARGET_NETNSID, nsid.to_bytes(4, ORDER, signed=True))
    # struct ifinfomsg: family, pad, type, index, flags, change
    body = bytes(4) + index.to_bytes(4, ORDER, signed=True) + bytes(8) + attr
    answers = _ask(RTM_GETLINK, body)
    data = answers[0] if answers else b""
    if len(data) < 16 or int.from_bytes(data[4:6], ORDER) == NLMSG_ERROR:
        return None
    return _attrs(data, 16 + 16)


def _name(value: bytes) -> str:
    """A NUL-terminated string attribute."""
    return value.split(b"\0", 1)[0].decode()


def _kind_of(attributes: dict[int, bytes]) -> str:
    info = _attrs(attributes.get(IFLA_LINKINFO, b""), 0)
    return _name(info.get(IFLA_INFO_KIND, b""))


def _number(attributes: dict[int, bytes], kind: int, default: int) -> int:
    value = attributes.get(kind, b"")
    return int.from_bytes(value[:4], ORDER, signed=True) if len(value) >= 4 else default


def inspect(name: str) -> tuple[str, int, int, int]:
    """(link kind or '', the ``nsid`` of the namespace its peer is in or -1,
    the index of the link it is enslaved to or 0, its peer's index there or
    0) of ``name``; ('', -1, 0, 0) when there is no such interface.  One request."""
    attributes = _getlink(name) if name else None
    if attributes is None:
        return "", -1, 0, 0
    return (
        _kind_of(attributes),
        _number(attributes, IFLA_LINK_NETNSID, -1),
        _number(attributes, IFLA_MASTER, 0),
        _number(attributes, IFLA_LINK, 0),
    )


def peer_link_local(nsid: int, index: int, ifname: str) -> str | None:
    """The IPv6 link-local address of link ``index`` in the namespace this
    one knows as ``nsid`` (a veth's peer: the pod's end), asked from here
    (``*_TARGET_NETNSID``): no thread enters the pod's namespace.  '' when
    it has none; None when the link there is not called ``ifname`` or the
    kernel cannot answer this way (then ask inside: ``podns.link_local``)."""
    try:
        found = _getlink(index=index, nsid=nsid)
        if found is None or _name(found.get(IFLA_IFNAME, b"")) != ifname:
            return None
        target = _attr(IFA_TARGET_NETNSID, nsid.to_bytes(4, ORDER, signed=True))
        # struct ifaddrmsg: family, prefix length, flags, scope, index
        body = bytes((AF_INET6, 0, 0, 0)) + index.to_bytes(4, ORDER) + target
        answers = _ask(RTM_GETADDR, body, dump=True)
    except OSError:
        return None
    for data in answers:
        if int.from_bytes(data[4:6], ORDER) == NLMSG_ERROR:
            return None
        if len(data) < 24 or data[16] != AF_INET6 or data[19] != RT_SCOPE_LINK:
            continue
        if int.from_bytes(data[20:24], ORDER) != index:
            continue
        address = _attrs(data, 24).get(IFA_ADDRESS, b"")
        if len(address) == 16:
            from firewall_plugin import addresses

            return addresses.text(address)
    return ""


def bridge_named(index: int) -> str:
    """The name of the bridge with ``index``, '' when it is no bridge (a
    bond, for example) or there is none."""
    found = _getlink(index=index) if index else None
    if found is None or _kind_of(found) != "bridge":
        return ""
    return _name(found.get(IFLA_IFNAME, b""))
