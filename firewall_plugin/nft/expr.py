"""nf_tables expressions, encoded: the words podwall's rules are made of.

Each function returns one encoded expression (an ``NFTA_LIST_ELEM``); a rule
is a concatenation of them (``rule_body``).  Registers, payload offsets and
the handful of statements follow what ``nft --debug=netlink`` shows the
``nft`` tool itself sending for the same rule text, so ``nft list table``
prints podwall's rules as ordinary nft syntax.

Pure: no I/O.
"""

from __future__ import annotations

import sys

from firewall_plugin.nft.netlink import attr, be16, be32, be64, nest, string, u8

REG_VERDICT, REG_1, REG_2 = 0, 1, 2
REG32_00 = 8

# expression attribute numbers (uapi nf_tables.h)
_LIST_ELEM, _EXPR_NAME, _EXPR_DATA = 1, 1, 2
_DATA_VALUE, _DATA_VERDICT = 1, 2
_VERDICT_CODE, _VERDICT_CHAIN = 1, 2

META_NFPROTO, META_L4PROTO, META_IIFNAME, META_OIFNAME, META_PKTTYPE = 15, 16, 6, 7, 19
META_PROTOCOL = 1
BASE_LL, BASE_NETWORK, BASE_TRANSPORT = 0, 1, 2
CMP_EQ, CMP_NEQ, CMP_LT, CMP_LTE, CMP_GT, CMP_GTE = 0, 1, 2, 3, 4, 5
CT_STATE = 0
CT_INVALID, CT_ESTABLISHED, CT_RELATED, CT_NEW = 1, 2, 4, 8

ACCEPT, DROP = 1, 0
JUMP, GOTO, RETURN, CONTINUE = -3, -4, -5, -1
REJECT_TCP_RST, REJECT_ICMPX = 1, 2
ICMPX_PORT_UNREACH, ICMPX_ADMIN_PROHIBITED = 1, 3
IFNAMSIZ = 16


def expression(name: str, *data: bytes) -> bytes:
    return nest(_LIST_ELEM, attr(_EXPR_NAME, string(name)), nest(_EXPR_DATA, *data))


def value(raw: bytes) -> bytes:
    """An ``NFTA_DATA_VALUE`` holding ``raw``."""
    return attr(_DATA_VALUE, raw)


def verdict_data(code: int, chain: str = "") -> bytes:
    """An ``NFTA_DATA_VERDICT`` (for immediates and verdict-map elements)."""
    inner = attr(_VERDICT_CODE, be32(code))
    if chain:
        inner += attr(_VERDICT_CHAIN, string(chain))
    return nest(_DATA_VERDICT, inner)


def meta(key: int, dreg: int = REG_1) -> bytes:
    return expression("meta", attr(1, be32(dreg)), attr(2, be32(key)))


def payload(base: int, offset: int, length: int, dreg: int = REG_1) -> bytes:
    return expression(
        "payload",
        attr(1, be32(dreg)),
        attr(2, be32(base)),
        attr(3, be32(offset)),
        attr(4, be32(length)),
    )


def cmp(op: int, data: bytes, sreg: int = REG_1) -> bytes:
    return expression("cmp", attr(1, be32(sreg)), attr(2, be32(op)), nest(3, value(data)))


def in_range(low: bytes, high: bytes, *, negate: bool = False, sreg: int = REG_1) -> bytes:
    """``sreg`` in [``low``, ``high``] (``negate``: not in it)."""
    return expression(
        "range",
        attr(1, be32(sreg)),
        attr(2, be32(1 if negate else 0)),  # NFT_RANGE_NEQ, NFT_RANGE_EQ
        nest(3, value(low)),
        nest(4, value(high)),
    )


def lookup(
    set_name: str, sreg: int = REG_1, *, dreg: int | None = None, invert: bool = False
) -> bytes:
    parts = [attr(1, string(set_name)), attr(2, be32(sreg))]
    if dreg is not None:
        parts.append(attr(3, be32(dreg)))
    if invert:
        parts.append(attr(5, be32(1)))
    return expression("lookup", *parts)


def bitwise(mask: bytes, sreg: int = REG_1, dreg: int = REG_1) -> bytes:
    return expression(
        "bitwise",
        attr(1, be32(sreg)),
        attr(2, be32(dreg)),
        attr(3, be32(len(mask))),
        nest(4, value(mask)),
        nest(5, value(bytes(len(mask)))),
    )


def ct(key: int, dreg: int = REG_1) -> bytes:
    return expression("ct", attr(1, be32(dreg)), attr(2, be32(key)))


def immediate_verdict(code: int, chain: str = "") -> bytes:
    return expression("immediate", attr(1, be32(REG_VERDICT)), nest(2, verdict_data(code, chain)))


def counter() -> bytes:
    return expression("counter", attr(1, be64(0)), attr(2, be64(0)))


def log(*, group: int, prefix: str, snaplen: int = 0) -> bytes:
    parts = [attr(1, be16(group)), attr(2, string(prefix))]
    if snaplen:
        parts.append(attr(3, be32(snaplen)))
    return expression("log", *parts)


def limit(*, rate: int, per_seconds: int, burst: int) -> bytes:
    return expression(
        "limit",
        attr(1, be64(rate)),
        attr(2, be64(per_seconds)),
        attr(3, be32(burst)),
        attr(4, be32(0)),
        attr(5, be32(0)),
    )


def reject(kind: int, code: int = 0) -> bytes:
    return expression("reject", attr(1, be32(kind)), attr(2, u8(code)))


# --- matches built from the words above -----------------------------------------


def host32(number: int) -> bytes:
    """A 32-bit value as the kernel keeps meta/ct keys: host byte order."""
    return number.to_bytes(4, sys.byteorder)


def ifname(name: str) -> bytes:
    """An interface name as nf_tables compares it: 16 bytes, NUL padded."""
    raw = name.encode()
    if len(raw) >= IFNAMSIZ:
        raise ValueError(f"interface name {name!r} is longer than {IFNAMSIZ - 1} bytes")
    return raw + bytes(IFNAMSIZ - len(raw))


def match_nfproto(family_number: int) -> bytes:
    """``meta nfproto ipv4|ipv6`` (2 or 10)."""
    return meta(META_NFPROTO) + cmp(CMP_EQ, bytes((family_number,)))


def match_l4proto(number: int) -> bytes:
    return meta(META_L4PROTO) + cmp(CMP_EQ, bytes((number,)))


def match_ct_state(bits: int, *, negate: bool = False) -> bytes:
    """``ct state <bits>`` (any of them), or ``ct state != <bits>`` (none of them)."""
    return ct(CT_STATE) + bitwise(host32(bits)) + cmp(CMP_EQ if negate else CMP_NEQ, bytes(4))


def match_port_range(offset: int, low: int, high: int) -> bytes:
    """The 16-bit field at transport ``offset`` (2: destination port) in [low, high]."""
    load = payload(BASE_TRANSPORT, offset, 2)
    if low == high:
        return load + cmp(CMP_EQ, be16(low))
    return load + cmp(CMP_GTE, be16(low)) + cmp(CMP_LTE, be16(high))


def rule_body(*expressions: bytes) -> bytes:
    """The ``NFTA_RULE_EXPRESSIONS`` attribute of a rule."""
    return nest(4, *expressions)
