"""Read podwall's nftables tables back: table comments, chains, set elements,
rule digests.  Read-only; every function takes an open ``netlink.Netlink``.
"""

from __future__ import annotations

from firewall_plugin import names
from firewall_plugin.nft import layout
from firewall_plugin.nft import netlink as nl
from firewall_plugin.nft import objects as obj

TYPE_CHECKING = False  # typing costs the CNI start-up ~4 ms (see values.py)
if TYPE_CHECKING:
    from collections.abc import Iterable

_DATA_VERDICT, _VERDICT_CODE, _VERDICT_CHAIN = 2, 1, 2


def _name_attr(table: str) -> bytes:
    return nl.attr(obj.TABLE_NAME, nl.string(table))


def _comment(userdata: bytes) -> str:
    offset = 0
    while offset + 2 <= len(userdata):
        kind, length = userdata[offset], userdata[offset + 1]
        if kind == obj.UDATA_COMMENT:
            return nl.text(userdata[offset + 2 : offset + 2 + length])
        offset += 2 + length
    return ""


def udata_entry(userdata: bytes, wanted: int) -> bytes | None:
    offset = 0
    while offset + 2 <= len(userdata):
        kind, length = userdata[offset], userdata[offset + 1]
        if kind == wanted:
            return userdata[offset + 2 : offset + 2 + length]
        offset += 2 + length
    return None


def table_comment(sock: nl.Netlink, family: int = layout.INET) -> str | None:
    """The comment of podwall's table of ``family``; None when there is no table."""
    replies = sock.request(nl.nft(nl.GETTABLE), family, _name_attr(layout.TABLE))
    for reply in replies:
        return _comment(reply.attributes.get(obj.TABLE_USERDATA, b""))
    return None


def chains(sock: nl.Netlink, family: int = layout.INET) -> list[str]:
    """The names of every chain of podwall's table of ``family``."""
    found = []
    for reply in sock.request(nl.nft(nl.GETCHAIN), family, _name_attr(layout.TABLE), dump=True):
        if nl.text(reply.attributes.get(obj.TABLE_NAME, b"")) != layout.TABLE:
            continue
        found.append(nl.text(reply.attributes.get(obj.CHAIN_NAME, b"")))
    return found


def chain_exists(sock: nl.Netlink, family: int, chain: str) -> bool:
    body = nl.attr(obj.CHAIN_TABLE, nl.string(layout.TABLE)) + nl.attr(
        obj.CHAIN_NAME, nl.string(chain)
    )
    return bool(sock.request(nl.nft(nl.GETCHAIN), family, body))


def _verdict(data: bytes) -> tuple[int, str] | None:
    verdict = nl.attrs(data).get(_DATA_VERDICT)
    if verdict is None:
        return None
    inner = nl.attrs(verdict)
    code = int.from_bytes(inner.get(_VERDICT_CODE, bytes(4)), "big", signed=True)
    return code, nl.text(inner.get(_VERDICT_CHAIN, b""))


def elements(sock: nl.Netlink, family: int, set_name: str) -> list[obj.Element]:
    """Every element of podwall's set ``set_name`` (empty when it does not exist)."""
    body = nl.attr(obj.ELEMS_TABLE, nl.string(layout.TABLE)) + nl.attr(
        obj.ELEMS_SET, nl.string(set_name)
    )
    found = []
    for reply in sock.request(nl.nft(nl.GETSETELEM), family, body, dump=True):
        listing = reply.attributes.get(obj.ELEMS_LIST, b"")
        for _, raw in nl.attr_list(listing):
            fields = nl.attrs(raw)
            key = nl.attrs(fields.get(obj.ELEM_KEY, b"")).get(1, b"")
            flags = nl.number(fields.get(obj.ELEM_FLAGS, bytes(4)))
            data = fields.get(obj.ELEM_DATA)
            verdict = _verdict(data) if data is not None else None
            found.append(obj.Element(key, verdict, end=bool(flags & obj.ELEM_INTERVAL_END)))
    return found


def verdict_chains(sock: nl.Netlink, family: int, set_name: str) -> set[str]:
    """The chains the elements of podwall's verdict map ``set_name`` jump to.

    Read from the dump's bytes, not parsed (~10x faster, ADD's cost on a full
    node): every NUL-terminated ``PODWALL-`` string in it.  A key can hold
    such a string only inside an interface name (at most 15 bytes), never a
    whole chain name (``names.MAX_NAME`` plus the family suffix), so callers
    that look for chain names are not misled by one."""
    body = nl.attr(obj.ELEMS_TABLE, nl.string(layout.TABLE)) + nl.attr(
        obj.ELEMS_SET, nl.string(set_name)
    )
    found = set()
    needle = names.PREFIX.encode() + b"-"
    for raw in sock.request_raw(nl.nft(nl.GETSETELEM), family, body, dump=True):
        start = raw.find(needle)
        while start >= 0:
            end = raw.find(b"\0", start)
            if end < 0:
                break
            found.add(raw[start:end].decode(errors="replace"))
            start = raw.find(needle, end)
    return found


def has_elements(
    sock: nl.Netlink, family: int, set_name: str, keys: Iterable[bytes]
) -> list[bytes]:
    """Those of ``keys`` that ``set_name`` lacks (one lookup each)."""
    missing = []
    head = nl.attr(obj.ELEMS_TABLE, nl.string(layout.TABLE)) + nl.attr(
        obj.ELEMS_SET, nl.string(set_name)
    )
    for key in keys:
        element = nl.nest(obj.LIST_ELEM, nl.nest(obj.ELEM_KEY, nl.attr(1, key)))
        body = head + nl.nest(obj.ELEMS_LIST, element)
        if not sock.request(nl.nft(nl.GETSETELEM), family, body):
            missing.append(key)
    return missing


def rule_digests(sock: nl.Netlink, family: int = layout.INET) -> dict[str, list[bytes]]:
    """Chain → the digests its rules carry, in order (b"" for a rule without
    one: written by someone else)."""
    found: dict[str, list[bytes]] = {}
    body = _name_attr(layout.TABLE)
    for reply in sock.request(nl.nft(nl.GETRULE), family, body, dump=True):
        if nl.text(reply.attributes.get(obj.RULE_TABLE, b"")) != layout.TABLE:
            continue
        chain = nl.text(reply.attributes.get(obj.RULE_CHAIN, b""))
        digest = udata_entry(reply.attributes.get(obj.RULE_USERDATA, b""), obj.UDATA_RULE_DIGEST)
        found.setdefault(chain, []).append(digest or b"")
    return found


def rule_counters(sock: nl.Netlink, family: int = layout.INET) -> list[tuple[str, int, int]]:
    """(comment, packets, bytes) of every rule of podwall's table that counts."""
    found = []
    body = _name_attr(layout.TABLE)
    for reply in sock.request(nl.nft(nl.GETRULE), family, body, dump=True):
        expressions = reply.attributes.get(4, b"")
        for _, element in nl.attr_list(expressions):
            fields = nl.attrs(element)
            if nl.text(fields.get(1, b"")) != "counter":
                continue
            data = nl.attrs(fields.get(2, b""))
            comment = _comment(reply.attributes.get(obj.RULE_USERDATA, b""))
            found.append((comment, nl.number(data.get(2, b"")), nl.number(data.get(1, b""))))
    return found
