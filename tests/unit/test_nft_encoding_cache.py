"""The nftables writer's shortcuts encode exactly what the long way does.

``translate.rule`` memoizes rules by every field but their comment, hash
sets share their elements, ``Element.encode`` writes a bare key from
pre-built headers, and ``NftApplier`` keeps each chain's encoded rules while
the chain is unchanged.  Each shortcut is compared with the plain encoding,
and a changed input must be encoded again."""

from __future__ import annotations

import pytest

from firewall_operator import nft_applier, nft_render
from firewall_plugin import model
from firewall_plugin.nft import expr, keys, layout, ops, translate
from firewall_plugin.nft import netlink as nl
from firewall_plugin.nft import objects as obj

PORTS = model.Match("tcp", (("dport", "8080"),))
BASE = model.Rule(
    "ACCEPT", "podwall: allow web", source="10.1.0.0/16", protocol="tcp", matches=(PORTS,)
)
#: another value for each field of a Rule, to show it is part of the memo key
OTHER = {
    "target": "DROP",
    "source": "10.2.0.0/16",
    "destination": "10.3.0.1",
    "in_interface": "veth1",
    "out_interface": "eth0",
    "protocol": "udp",
    "matches": (model.Match("udp", (("dport", "53"),)),),
    "target_options": (("reject-with", "tcp-reset"),),
    "goto": True,
}
#: the target under which a field changes what is encoded (others: BASE's)
TARGET_FOR = {"target_options": "REJECT", "goto": "PODWALL-E-ABC"}
RULES = [
    BASE,
    model.Rule("DROP", "invalid", matches=(model.Match("conntrack", (("ctstate", "INVALID"),)),)),
    model.Rule("PODWALL-I-ABC", "tiers", goto=True),
    model.Rule("RETURN", "peers", matches=(model.Match("set", (("match-set", "P-x src"),)),)),
    model.Rule(
        "REJECT", "ports", protocol="tcp", matches=(model.Match("tcp", (("!dport", "1:1024"),)),)
    ),
    model.Rule("ACCEPT", "dns", in_interface="veth+", out_interface="veth7"),
    model.Rule("ACCEPT", "named", matches=(model.Match("set", (("match-set", "N-y dst,dst"),)),)),
]


@pytest.fixture(autouse=True)
def empty_memos() -> None:
    translate._ENCODED.clear()
    translate._MATCHES.clear()
    for memo in translate._MEMBERS.values():
        memo.clear()


@pytest.mark.parametrize("family", model.FAMILIES)
def test_a_memoized_rule_is_what_encoding_it_gives(family: model.Family) -> None:
    first = [translate.rule(rule, family) for rule in RULES]
    again = [translate.rule(rule, family) for rule in RULES]
    plain = [translate._encode_rule(rule, family) for rule in RULES]
    assert first == again == plain
    assert len(set(plain)) == len(plain)


def test_the_comment_is_not_encoded_every_other_field_is() -> None:
    encoded = translate.rule(BASE, "ipv4")
    assert translate.rule(BASE.replace(comment="another pod"), "ipv4") is encoded
    assert set(OTHER) == set(model.Rule._fields) - {"comment"}  # a new field needs a case
    for name, value in OTHER.items():
        base = BASE.replace(target=TARGET_FOR.get(name, BASE.target))
        changed = base.replace(**{name: value})
        assert translate.rule(changed, "ipv4") == translate._encode_rule(changed, "ipv4")
        assert translate.rule(changed, "ipv4") != translate.rule(base, "ipv4"), name
    assert translate.rule(BASE, "ipv6") != encoded


def test_the_memo_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(translate, "ENCODED_LIMIT", 4)
    rules = [BASE.replace(destination=f"10.9.0.{n}") for n in range(20)]
    for rule in rules:
        assert translate.rule(rule, "ipv4") == translate._encode_rule(rule, "ipv4")
        assert len(translate._ENCODED) <= 4


def test_a_failure_is_not_remembered() -> None:
    odd = model.Rule("ACCEPT", "odd", matches=(model.Match("owner", (("uid-owner", "0"),)),))
    for _ in range(2):
        with pytest.raises(ValueError, match="owner"):
            translate.rule(odd, "ipv4")


def long_way(element: obj.Element, *, keys_only: bool) -> bytes:
    """``Element.encode`` without its shortcut for bare keys."""
    parts = [nl.nest(obj.ELEM_KEY, expr.value(element.key))]
    if element.end:
        parts.append(nl.attr(obj.ELEM_FLAGS, nl.be32(obj.ELEM_INTERVAL_END)))
    if not keys_only and element.verdict is not None:
        parts.append(nl.nest(obj.ELEM_DATA, expr.verdict_data(*element.verdict)))
    if not keys_only and element.open:
        flags = obj.ELEM_INTERVAL_OPEN.to_bytes(4, nl.BYTEORDER)
        parts.append(nl.attr(obj.ELEM_USERDATA, obj.udata((obj.UDATA_ELEM_FLAGS, flags))))
    return nl.nest(obj.LIST_ELEM, *parts)


@pytest.mark.parametrize("size", range(1, 25))
def test_elements_encode_as_the_long_way_does(size: int) -> None:
    key = bytes(range(1, size + 1))
    for element in (
        obj.Element(key),
        obj.Element(key, end=True),
        obj.Element(key, open=True),
        obj.Element(key, (expr.JUMP, "PODWALL-I-X-4")),
        obj.Element(key, (expr.DROP, ""), end=True),
    ):
        for keys_only in (False, True):
            assert element.encode(keys_only=keys_only) == long_way(element, keys_only=keys_only)


def test_an_element_is_still_a_frozen_value() -> None:
    element = obj.Element(b"\x0a\0\0\x01")
    assert element == obj.Element(b"\x0a\0\0\x01", None, False, False)
    assert hash(element) == hash(obj.Element(b"\x0a\0\0\x01"))
    assert element != obj.Element(b"\x0a\0\0\x01", end=True)
    with pytest.raises(AttributeError):
        element.key = b""  # type: ignore[misc]


def test_hash_sets_share_elements_and_key_them_right() -> None:
    one = model.IPSet("P-a", "hash:ip", "ipv4", ("10.0.0.1", "10.0.0.2"))
    two = model.IPSet("P-b", "hash:ip", "ipv4", ("10.0.0.2", "10.0.0.3"))
    ports = model.IPSet("N-a", "hash:ip,port", "ipv6", ("fd00::2,tcp:80", "fd00::2,udp:53"))
    _, first = translate.peer_set(one)
    _, second = translate.peer_set(two)
    assert first[1] is second[0]
    assert [e.key for e in first + second] == [bytes((10, 0, 0, n)) for n in (1, 2, 2, 3)]
    _, named = translate.peer_set(ports)
    address = bytes.fromhex("fd00" + "00" * 13 + "02")
    assert [e.key for e in named] == [
        address + bytes((6, 0, 0, 0, 0, 80, 0, 0)),
        address + bytes((17, 0, 0, 0, 0, 53, 0, 0)),
    ]


def test_the_members_memo_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(translate, "MEMBERS_LIMIT", 3)
    for n in range(10):
        ipset = model.IPSet("P-a", "hash:ip", "ipv4", (f"10.0.1.{n}", f"10.0.2.{n}"))
        _, elements = translate.peer_set(ipset)
        assert [e.key[2:] for e in elements] == [bytes((1, n)), bytes((2, n))]
        assert sum(len(memo) for memo in translate._MEMBERS.values()) <= 3


def bodies(name: str, family: model.Family, chain: model.Chain) -> list[bytes]:
    """The ``add rule`` bodies of ``chain`` the long way (``objects.add_rule``)."""
    batch = nl.Batch()
    for rule in chain.rules:
        expressions = translate._encode_rule(rule, family)
        obj.add_rule(batch, layout.INET, layout.TABLE, name, expressions,
                     comment=rule.comment, digest=layout.rule_digest(expressions))  # fmt: skip
    return [body for _, _, _, body in batch.messages]


def test_the_applier_keeps_a_chain_encoded_until_it_changes(tmp_path: object) -> None:
    applier = nft_applier.NftApplier(run_dir=str(tmp_path))
    chain = model.Chain("PODWALL-I-ABC", tuple(RULES))
    kept = applier._encoding("PODWALL-I-ABC-4", "ipv4", chain)
    assert kept.bodies == bodies("PODWALL-I-ABC-4", "ipv4", chain)
    equal = model.Chain(chain.name, chain.rules)
    assert applier._encoding("PODWALL-I-ABC-4", "ipv4", equal) is kept
    changed = model.Chain(chain.name, (*RULES[:-1], RULES[-1].replace(comment="renamed")))
    renewed = applier._encoding("PODWALL-I-ABC-4", "ipv4", changed)
    assert renewed is not kept
    assert renewed.bodies == bodies("PODWALL-I-ABC-4", "ipv4", changed) != kept.bodies
    assert renewed.digests == kept.digests  # the comment is not in the digest
    other_family = applier._encoding("PODWALL-I-ABC-4", "ipv6", changed)
    assert other_family.bodies == bodies("PODWALL-I-ABC-4", "ipv6", changed)
    assert applier._digests("PODWALL-I-X-4", "ipv4", chain) == kept.digests
    assert "PODWALL-I-X-4" not in applier._encoded  # checking remembers nothing


ENDPOINTS = [
    model.Endpoint("c1-eth0", "c1", "eth0", "ns/a", "veth1", "cni0", ("10.0.0.2", "fd00::2"),
                   "fe80::1"),
    model.Endpoint("c2-eth0", "c2", "eth0", "ns/b", "veth2", "", ("10.0.0.3",), "",
                   ingress_open=True),
]  # fmt: skip


def test_rendered_endpoints_are_what_the_plain_functions_give() -> None:
    for _ in range(2):  # the second time from the memo
        out = nft_render.render({}, ENDPOINTS)
        items: set[layout.Item] = set()
        owners: dict[str, str] = {}
        for endpoint in ENDPOINTS:
            items.update(layout.endpoint_items(endpoint))
            for family in model.FAMILIES:
                names = ops.policy_chain_names(endpoint.container_id, endpoint.ifname, family)
                owners.update(dict.fromkeys(names[:2], endpoint.key))
        assert out.items == items
        assert out.owners == owners
    moved = ENDPOINTS[0].replace(addresses=("10.0.0.9",))
    assert nft_render.render({}, [moved]).items == set(layout.endpoint_items(moved))


def test_apply_keeps_its_socket_until_an_error_or_a_move(tmp_path: object) -> None:
    applier = nft_applier.NftApplier(run_dir=str(tmp_path))
    with applier._netlink() as first:
        pass
    with applier._netlink() as again:
        assert again is first
    with pytest.raises(RuntimeError), applier._netlink():
        raise RuntimeError("a failed write")
    with applier._netlink() as renewed:
        assert renewed is not first
    applier._sock_place = (0, 0)  # as if forked, or moved to another network namespace
    with applier._netlink() as moved:
        assert moved is not renewed
    assert renewed.sock.fileno() == -1  # closed


@pytest.mark.parametrize("text", ["", "podwall: allow web", "é" * 99, "é" * 100, "x" + "é" * 100])
def test_comments_are_cut_to_whole_characters_as_before(text: str) -> None:
    raw = text.encode()[:200].decode(errors="ignore").encode() + b"\0"
    assert obj.comment_udata(text) == obj.udata((obj.UDATA_COMMENT, raw))
    assert len(obj.comment_udata(text)) <= 203


@pytest.mark.parametrize("entry", ["10.0.0.5,tcp:8080", "fd00::5,udp:53", "10.0.0.5,sctp:0"])
def test_named_port_keys_are_the_concatenation(entry: str) -> None:
    address, _, port = entry.partition(",")
    protocol, _, number = port.partition(":")
    expected = keys.concat(
        keys.address(address),
        bytes((keys.PROTOCOL_NUMBERS[protocol],)),
        int(number).to_bytes(2, "big"),
    )
    assert keys.port_key(address, protocol, int(number)) == expected
    with pytest.raises(OverflowError):
        keys.port_key(address, protocol, 65536)


def test_elements_are_cut_in_runs_the_kernel_takes() -> None:
    for elements in (
        [obj.Element(n.to_bytes(4, "big")) for n in range(10_000)],
        [obj.Element(n.to_bytes(4, "big"), end=bool(n % 3)) for n in range(10_000)],
    ):
        batch = nl.Batch()
        obj.add_elements(batch, layout.INET, layout.TABLE, "P-x", elements)
        runs = [nl.attr_list(nl.attrs(body)[obj.ELEMS_LIST]) for _, _, _, body in batch.messages]
        assert [raw for run in runs for _, raw in run] == [
            long_way(element, keys_only=False)[4:] for element in elements
        ]
        for body in (body for _, _, _, body in batch.messages):
            assert len(nl.attrs(body)[obj.ELEMS_LIST]) <= obj.MAX_ELEMENTS_BYTES
        full = [len(nl.attrs(body)[obj.ELEMS_LIST]) for _, _, _, body in batch.messages]
        assert all(size > obj.MAX_ELEMENTS_BYTES - 40 for size in full[:-1])  # runs are filled


def test_a_batch_encodes_as_its_messages_do() -> None:
    batch = nl.Batch()
    obj.add_table(batch, nl.NFPROTO_INET, "podwall", comment="x")
    obj.add_chain(batch, nl.NFPROTO_BRIDGE, "podwall", "forward")
    obj.add_rule(batch, nl.NFPROTO_INET, "podwall", "forward", translate.rule(BASE, "ipv4"),
                 comment="c")  # fmt: skip
    first = 0x7FFF_FF00
    expected = [nl.message(nl.NFNL_MSG_BATCH_BEGIN, 0, 0, b"", seq=first,
                           res=nl.NFNL_SUBSYS_NFTABLES)]  # fmt: skip
    for seq, (kind, family, flags, body) in enumerate(batch.messages, first + 1):
        expected.append(nl.message(nl.nft(kind), flags, family, body, seq=seq))
    expected.append(nl.message(nl.NFNL_MSG_BATCH_END, 0, 0, b"", seq=first + 4,
                               res=nl.NFNL_SUBSYS_NFTABLES))  # fmt: skip
    assert batch.encode(first) == b"".join(expected)
