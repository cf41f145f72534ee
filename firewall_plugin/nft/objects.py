"""nf_tables objects encoded into a ``netlink.Batch``: tables, chains, rules,
sets and their elements, and the user data the ``nft`` tool reads back
(comments, key byte order) so that ``nft list`` prints them well.

Pure: no I/O.
"""

from __future__ import annotations

from firewall_plugin.nft import expr
from firewall_plugin.nft import netlink as nl
from firewall_plugin.values import Frozen, init_fields

TYPE_CHECKING = False  # typing costs the CNI start-up ~4 ms (see values.py)
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

# attribute numbers (uapi nf_tables.h)
TABLE_NAME, TABLE_FLAGS, TABLE_USERDATA = 1, 2, 6
CHAIN_TABLE, CHAIN_NAME, CHAIN_HOOK, CHAIN_POLICY, CHAIN_TYPE, CHAIN_USERDATA = 1, 3, 4, 5, 7, 12
HOOK_NUM, HOOK_PRIORITY = 1, 2
RULE_TABLE, RULE_CHAIN, RULE_USERDATA = 1, 2, 7
SET_TABLE, SET_NAME, SET_FLAGS, SET_KEY_TYPE, SET_KEY_LEN = 1, 2, 3, 4, 5
SET_DATA_TYPE, SET_DATA_LEN, SET_DESC, SET_ID, SET_USERDATA = 6, 7, 9, 10, 13
SET_DESC_SIZE, SET_DESC_CONCAT, SET_FIELD_LEN = 1, 2, 1
ELEMS_TABLE, ELEMS_SET, ELEMS_LIST = 1, 2, 3
ELEM_KEY, ELEM_DATA, ELEM_FLAGS, ELEM_USERDATA = 1, 2, 3, 6
LIST_ELEM = 1

SET_INTERVAL, SET_MAP, SET_CONCAT = 0x4, 0x8, 0x80
ELEM_INTERVAL_END = 0x1
DATA_VERDICT = 0xFFFFFF00
# nft's data types (nftables/include/datatype.h), for NFTA_SET_KEY_TYPE
TYPE_VERDICT, TYPE_IPADDR, TYPE_IP6ADDR, TYPE_INET_PROTOCOL = 1, 7, 8, 12
TYPE_INET_SERVICE, TYPE_IFNAME = 13, 41
TYPE_BITS = 6
# user data TLV types the nft tool reads (libnftnl udata)
UDATA_COMMENT = 0
UDATA_SET_KEYBYTEORDER, UDATA_ELEM_FLAGS = 0, 1
UDATA_RULE_DIGEST = 0x70  # podwall's own: ignored by nft, read back by the agent
BYTEORDER_HOST, BYTEORDER_BIG = 1, 2
ELEM_INTERVAL_OPEN = 1
MAX_ELEMENTS_BYTES = 48 * 1024  # a nested attribute's length is 16 bits


def udata(*entries: tuple[int, bytes]) -> bytes:
    return b"".join(bytes((kind, len(data))) + data for kind, data in entries)


def comment_udata(text: str) -> bytes:
    """A comment's user data: at most 200 bytes of whole UTF-8 characters."""
    raw = text.encode()
    if len(raw) > 200:
        raw = raw[:200].decode(errors="ignore").encode()
    return bytes((UDATA_COMMENT, len(raw) + 1)) + raw + b"\0"


def concat_type(*types: int) -> int:
    value = 0
    for kind in types:
        value = value << TYPE_BITS | kind
    return value


def field_len(kind: int) -> int:
    """Bytes a key field takes in a concatenation register (rounded to 4)."""
    return {TYPE_IPADDR: 4, TYPE_IP6ADDR: 16, TYPE_IFNAME: 16}.get(kind, 4)


class SetSpec(Frozen):
    """A named set or verdict map: its key fields (nft data types), whether
    it holds intervals, whether its elements map to verdicts."""

    __slots__ = ("fields", "interval", "name", "verdicts")
    name: str
    fields: tuple[int, ...]
    interval: bool
    verdicts: bool

    def __init__(
        self, name: str, fields: tuple[int, ...], interval: bool = False, verdicts: bool = False
    ) -> None:
        init_fields(self, name, fields, interval, verdicts)

    @property
    def key_len(self) -> int:
        if len(self.fields) == 1:
            return {TYPE_IPADDR: 4, TYPE_IP6ADDR: 16, TYPE_IFNAME: 16}[self.fields[0]]
        return sum(field_len(kind) for kind in self.fields)


_set_field = object.__setattr__
#: the attribute headers of a bare element (LIST_ELEM > ELEM_KEY > DATA_VALUE)
#: by key length, and the padding after a key
_KEY_HEADS: dict[int, bytes] = {}
_PADDING = (b"", b"\0\0\0", b"\0\0", b"\0")


def _key_head(size: int) -> bytes:
    """The 12 header bytes before a ``size``-byte key in a bare element."""
    return nl.nest(LIST_ELEM, nl.nest(ELEM_KEY, expr.value(bytes(size))))[:12]


class Element(Frozen):
    """One set element: ``key`` bytes; ``verdict`` (code, chain) for maps;
    ``end``: an interval's end marker; ``open``: an interval without end."""

    __slots__ = ("end", "key", "open", "verdict")
    key: bytes
    verdict: tuple[int, str] | None
    end: bool
    open: bool

    def __init__(
        self,
        key: bytes,
        verdict: tuple[int, str] | None = None,
        end: bool = False,
        open: bool = False,
    ) -> None:
        # not init_fields: the agent makes one per peer set member (tens of
        # thousands a sync on a big cluster), and this is twice as fast
        _set_field(self, "key", key)
        _set_field(self, "verdict", verdict)
        _set_field(self, "end", end)
        _set_field(self, "open", open)

    def encode(self, *, keys_only: bool = False) -> bytes:
        key = self.key
        if not self.end and (keys_only or (self.verdict is None and not self.open)):
            # the common element, a bare key: its headers depend only on its length
            size = len(key)
            head = _KEY_HEADS.get(size)
            if head is None:
                head = _KEY_HEADS[size] = _key_head(size)
            return head + key + _PADDING[size % 4]
        parts = [nl.nest(ELEM_KEY, expr.value(key))]
        if self.end:
            parts.append(nl.attr(ELEM_FLAGS, nl.be32(ELEM_INTERVAL_END)))
        if not keys_only and self.verdict is not None:
            parts.append(nl.nest(ELEM_DATA, expr.verdict_data(*self.verdict)))
        if not keys_only and self.open:
            flags = ELEM_INTERVAL_OPEN.to_bytes(4, nl.BYTEORDER)
            parts.append(nl.attr(ELEM_USERDATA, udata((UDATA_ELEM_FLAGS, flags))))
        return nl.nest(LIST_ELEM, *parts)


# --- messages --------------------------------------------------------------------


def add_table(batch: nl.Batch, family: int, name: str, *, comment: str = "") -> None:
    body = nl.attr(TABLE_NAME, nl.string(name)) + nl.attr(TABLE_FLAGS, nl.be32(0))
    if comment:
        body += nl.attr(TABLE_USERDATA, comment_udata(comment))
    batch.add(nl.NEWTABLE, family, body, nl.NLM_F_CREATE, note=f"table {name}")


def destroy_table(batch: nl.Batch, family: int, name: str) -> None:
    batch.add(nl.DESTROYTABLE, family, nl.attr(TABLE_NAME, nl.string(name)), note=f"table {name}")


def add_chain(
    batch: nl.Batch,
    family: int,
    table: str,
    name: str,
    *,
    hook: tuple[int, int] | None = None,
    comment: str = "",
) -> None:
    """A chain (``hook``: (hook number, priority) of a base chain, policy
    accept); NLM_F_CREATE without EXCL: adding one that exists changes nothing."""
    body = nl.attr(CHAIN_TABLE, nl.string(table)) + nl.attr(CHAIN_NAME, nl.string(name))
    if hook is not None:
        number, priority = hook
        body += nl.nest(
            CHAIN_HOOK,
            nl.attr(HOOK_NUM, nl.be32(number)),
            nl.attr(HOOK_PRIORITY, nl.be32(priority)),
        )
        body += nl.attr(CHAIN_POLICY, nl.be32(expr.ACCEPT))
        body += nl.attr(CHAIN_TYPE, nl.string("filter"))
    if comment:
        body += nl.attr(CHAIN_USERDATA, comment_udata(comment))
    batch.add(nl.NEWCHAIN, family, body, nl.NLM_F_CREATE, note=f"chain {name}")


def _chain_ref(table: str, chain: str) -> bytes:
    return nl.attr(CHAIN_TABLE, nl.string(table)) + nl.attr(CHAIN_NAME, nl.string(chain))


def flush_chain(batch: nl.Batch, family: int, table: str, chain: str) -> None:
    """Delete every rule of ``chain`` (which must exist)."""
    body = nl.attr(RULE_TABLE, nl.string(table)) + nl.attr(RULE_CHAIN, nl.string(chain))
    batch.add(nl.DELRULE, family, body, note=f"of chain {chain}")


def destroy_chain(batch: nl.Batch, family: int, table: str, chain: str) -> None:
    """Delete ``chain`` and its rules; no error when it does not exist (a
    chain something still jumps to cannot be deleted: EBUSY)."""
    batch.add(nl.DESTROYCHAIN, family, _chain_ref(table, chain), note=chain)


def add_rule(
    batch: nl.Batch,
    family: int,
    table: str,
    chain: str,
    expressions: bytes,
    *,
    comment: str,
    digest: bytes = b"",
) -> None:
    """Append a rule (``expressions``: the concatenated encoded expressions)."""
    body = rule_message(rule_head(table, chain), expressions, comment=comment, digest=digest)
    add_rule_message(batch, family, chain, body)


def rule_head(table: str, chain: str) -> bytes:
    """The attributes naming a rule's table and chain (the same for all its rules)."""
    return nl.attr(RULE_TABLE, nl.string(table)) + nl.attr(RULE_CHAIN, nl.string(chain))


def rule_message(head: bytes, expressions: bytes, *, comment: str, digest: bytes = b"") -> bytes:
    """The body of an ``add rule`` message (``head``: ``rule_head``): it can
    be kept and added again (``add_rule_message``) while the rule is unchanged."""
    return head + rule_expressions(expressions) + rule_user_data(comment, digest)


def rule_expressions(expressions: bytes) -> bytes:
    """The ``NFTA_RULE_EXPRESSIONS`` attribute holding ``expressions``."""
    return expr.rule_body(expressions)


def rule_user_data(comment: str, digest: bytes = b"") -> bytes:
    """The ``NFTA_RULE_USERDATA`` attribute: ``comment`` and ``digest``."""
    data = comment_udata(comment)
    if digest:
        data += bytes((UDATA_RULE_DIGEST, len(digest))) + digest
    return nl.attr(RULE_USERDATA, data)


def add_rule_message(batch: nl.Batch, family: int, chain: str, body: bytes) -> None:
    """Append the rule ``body`` (``rule_message``) to ``chain``."""
    batch.add(nl.NEWRULE, family, body, nl.NLM_F_CREATE | nl.NLM_F_APPEND, note=f"to {chain}")


def add_rule_messages(batch: nl.Batch, family: int, chain: str, bodies: list[bytes]) -> None:
    """Append the rules ``bodies`` (``rule_message``s) to ``chain``, in order."""
    flags = nl.NLM_F_CREATE | nl.NLM_F_APPEND
    batch.add_all(nl.NEWRULE, family, bodies, flags, note=f"to {chain}")


def add_set(batch: nl.Batch, family: int, table: str, spec: SetSpec, *, size: int = 0) -> None:
    """A named set; ``size`` (a hash set's): at most that many elements, and
    the kernel then builds a fixed-size hash table instead of a resizable
    one (``nft_hash_fast``/``nft_hash`` rather than ``rhash``: filling it
    costs half as much; adding elements past ``size`` fails with ENFILE)."""
    flags = (SET_INTERVAL if spec.interval else 0) | (SET_MAP if spec.verdicts else 0)
    concat = len(spec.fields) > 1
    if concat and spec.interval:
        flags |= SET_CONCAT
    body = nl.attr(SET_TABLE, nl.string(table)) + nl.attr(SET_NAME, nl.string(spec.name))
    if flags:
        body += nl.attr(SET_FLAGS, nl.be32(flags))
    body += nl.attr(SET_KEY_TYPE, nl.be32(concat_type(*spec.fields)))
    body += nl.attr(SET_KEY_LEN, nl.be32(spec.key_len))
    if spec.verdicts:
        body += nl.attr(SET_DATA_TYPE, nl.be32(DATA_VERDICT))
        body += nl.attr(SET_DATA_LEN, nl.be32(16))
    description = nl.attr(SET_DESC_SIZE, nl.be32(size)) if size else b""
    if concat and spec.interval:
        lengths = [
            nl.nest(LIST_ELEM, nl.attr(SET_FIELD_LEN, nl.be32(field_len(f)))) for f in spec.fields
        ]
        description += nl.nest(SET_DESC_CONCAT, *lengths)
    if description:
        body += nl.nest(SET_DESC, description)
    order = BYTEORDER_HOST if spec.fields == (TYPE_IFNAME,) else BYTEORDER_BIG
    if concat:
        order = 0
    body += nl.attr(SET_ID, nl.be32(batch.new_id()))
    body += nl.attr(SET_USERDATA, udata((UDATA_SET_KEYBYTEORDER, order.to_bytes(4, nl.BYTEORDER))))
    batch.add(nl.NEWSET, family, body, nl.NLM_F_CREATE, note=f"set {spec.name}")


def destroy_set(batch: nl.Batch, family: int, table: str, name: str) -> None:
    body = nl.attr(SET_TABLE, nl.string(table)) + nl.attr(SET_NAME, nl.string(name))
    batch.add(nl.DESTROYSET, family, body, note=f"set {name}")


def _element_messages(
    batch: nl.Batch,
    kind: int,
    family: int,
    table: str,
    set_name: str,
    elements: Iterable[Element],
    *,
    keys_only: bool,
    flags: int = 0,
) -> None:
    head = nl.attr(ELEMS_TABLE, nl.string(table)) + nl.attr(ELEMS_SET, nl.string(set_name))
    note = f"of {set_name}"
    for chunk in _chunks(_encoded(elements, keys_only=keys_only)):
        batch.add(kind, family, head + nl.nest(ELEMS_LIST, *chunk), flags, note=note)


#: bare elements' encodings by key: a peer set member's address is in many
#: sets and in every full write (the bench workload writes 64k members, 35k
#: distinct keys); bounded, emptied when full
_BARE: dict[bytes, bytes] = {}
BARE_LIMIT = 1 << 17


def _encoded(elements: Iterable[Element], *, keys_only: bool) -> list[bytes]:
    """Each of ``elements`` encoded (``Element.encode``), bare ones from ``_BARE``."""
    out: list[bytes] = []
    append, known = out.append, _BARE
    for element in elements:
        if element.end or (not keys_only and (element.verdict is not None or element.open)):
            append(element.encode(keys_only=keys_only))
            continue
        found = known.get(element.key)
        if found is None:
            if len(known) >= BARE_LIMIT:
                known.clear()
            found = known[element.key] = element.encode(keys_only=True)
        append(found)
    return out


def _chunks(encoded: list[bytes]) -> Iterator[list[bytes]]:
    """``encoded`` elements in runs of at most ``MAX_ELEMENTS_BYTES`` (a longer
    element alone); elements of one size (the usual set) are cut by arithmetic."""
    sizes = set(map(len, encoded))
    if len(sizes) == 1:
        step = max(1, MAX_ELEMENTS_BYTES // sizes.pop())
        for start in range(0, len(encoded), step):
            yield encoded[start : start + step]
        return
    chunk: list[bytes] = []
    size = 0
    for item in encoded:
        if chunk and size + len(item) > MAX_ELEMENTS_BYTES:
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += len(item)
    if chunk:
        yield chunk


def add_elements(
    batch: nl.Batch, family: int, table: str, set_name: str, elements: Sequence[Element]
) -> None:
    """Add ``elements``; one that exists with the same data is no error."""
    _element_messages(
        batch,
        nl.NEWSETELEM,
        family,
        table,
        set_name,
        elements,
        keys_only=False,
        flags=nl.NLM_F_CREATE,
    )


def destroy_elements(
    batch: nl.Batch, family: int, table: str, set_name: str, elements: Sequence[Element]
) -> None:
    """Remove ``elements`` (by key); absent ones are no error."""
    _element_messages(batch, nl.DESTROYSETELEM, family, table, set_name, elements, keys_only=True)


def flush_set(batch: nl.Batch, family: int, table: str, set_name: str) -> None:
    """Remove every element of ``set_name``."""
    body = nl.attr(ELEMS_TABLE, nl.string(table)) + nl.attr(ELEMS_SET, nl.string(set_name))
    batch.add(nl.DELSETELEM, family, body, note=f"of {set_name}")
