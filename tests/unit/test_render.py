"""render: iptables-save spelling, rule order, restore and ipset texts."""

from __future__ import annotations

import pytest

from firewall_plugin import model, names, render

QUOTE = {
    "bare": ("RELATED,ESTABLISHED", "RELATED,ESTABLISHED"),
    "empty": ("", '""'),
    "space": ("a b", '"a b"'),
    "tab": ("a\tb", '"a\tb"'),
    "quote-escaped": ('a"b', '"a\\"b"'),
}


@pytest.mark.parametrize(("value", "wanted"), QUOTE.values(), ids=QUOTE.keys())
def test_quote(value: str, wanted: str) -> None:
    assert render.quote(value) == wanted


SAVE_STRING = {
    "word": ("podwall", "podwall"),
    "underscore-dash-digits": ("podwall_x-1", "podwall_x-1"),
    "colon-is-quoted": ("podwall:x", '"podwall:x"'),
    "space": ("podwall: a b", '"podwall: a b"'),
    "slash": ("x/a", '"x/a"'),
    "empty": ("", '""'),
    "escapes": ("a'b\\c\"", '"a\\\'b\\\\c\\""'),
}


@pytest.mark.parametrize(("value", "wanted"), SAVE_STRING.values(), ids=SAVE_STRING.keys())
def test_save_string_quotes_like_iptables_save(value: str, wanted: str) -> None:
    assert render.save_string(value) == wanted


OPTIONS = {
    "plain": (("dport", "80"), ["--dport", "80"]),
    "negated": (("!ctstate", "INVALID"), ["!", "--ctstate", "INVALID"]),
    "flag": (("syn", ""), ["--syn"]),
    "negated-flag": (("!syn", ""), ["!", "--syn"]),
    "multi-word": (("match-set", "S src,dst"), ["--match-set", "S", "src,dst"]),
    "negated-multi-word": (("!match-set", "S src"), ["!", "--match-set", "S", "src"]),
    "string-option": (("log-prefix", "pw: "), ["--log-prefix", '"pw: "']),
}


@pytest.mark.parametrize(("option", "wanted"), OPTIONS.values(), ids=OPTIONS.keys())
def test_option_words(option: model.Option, wanted: list[str]) -> None:
    assert render.option_words(*option) == wanted


ADDRESSES = {
    "ipv4-host": ("10.0.0.5", "10.0.0.5/32"),
    "ipv4-net": ("10.1.0.0/16", "10.1.0.0/16"),
    "ipv4-host-bits-masked": ("10.1.2.3/16", "10.1.0.0/16"),
    "ipv6-host": ("FD00:0:0::5", "fd00::5/128"),
    "ipv6-net": ("fd00:10::/64", "fd00:10::/64"),
    "all": ("0.0.0.0/0", "0.0.0.0/0"),
}


@pytest.mark.parametrize(("value", "wanted"), ADDRESSES.values(), ids=ADDRESSES.keys())
def test_address_as_iptables_save_prints_it(value: str, wanted: str) -> None:
    assert render.address(value, model.family_of(value)) == wanted


FULL = model.Rule(
    "PODWALL-I-X",
    "podwall: full",
    source="10.0.0.5",
    destination="10.1.0.0/16",
    in_interface="eth0",
    out_interface="veth+",
    protocol="tcp",
    matches=(
        model.Match("tcp", (("dport", "80"),)),
        model.Match("set", (("!match-set", "PODWALL-S src"),)),
    ),
    goto=True,
)
SPECS = {
    "field-order": (
        FULL,
        "-s 10.0.0.5/32 -d 10.1.0.0/16 -i eth0 -o veth+ -p tcp -m tcp --dport 80 "
        '-m set ! --match-set PODWALL-S src -m comment --comment "podwall: full" -g PODWALL-I-X',
    ),
    "minimal-bare-comment": (model.Rule("DROP", "podwall"), "-m comment --comment podwall -j DROP"),
    "target-options": (
        model.Rule("REJECT", "podwall: d", protocol="tcp",
                   target_options=(("reject-with", "tcp-reset"),)),
        '-p tcp -m comment --comment "podwall: d" -j REJECT --reject-with tcp-reset',
    ),
    "negated-match": (
        model.Rule("RETURN", "podwall_x",
                   matches=(model.Match("conntrack", (("!ctstate", "NEW"),)),)),
        "-m conntrack ! --ctstate NEW -m comment --comment podwall_x -j RETURN",
    ),
}  # fmt: skip


@pytest.mark.parametrize(("rule", "wanted"), SPECS.values(), ids=SPECS.keys())
def test_rule_spec(rule: model.Rule, wanted: str) -> None:
    assert render.rule_spec(rule, "ipv4") == wanted


def test_rule_spec_ipv6_addresses() -> None:
    rule = model.Rule("DROP", "podwall", source="fd00::5", destination="fd00:1::/64")
    spec = "-s fd00::5/128 -d fd00:1::/64 -m comment --comment podwall -j DROP"
    assert render.rule_spec(rule, "ipv6") == spec


FORWARD_JUMPS = {
    "ours": (render.hook_jump_spec("FORWARD"), True),
    "goto": (f"-g {names.FORWARD_CHAIN}", True),
    "other-chain": ("-j KUBE-FORWARD", False),
    "prefix-only": (f"-j {names.FORWARD_CHAIN}-X", False),
    "empty": ("", False),
}


@pytest.mark.parametrize(("spec", "wanted"), FORWARD_JUMPS.values(), ids=FORWARD_JUMPS.keys())
def test_is_hook_jump(spec: str, wanted: bool) -> None:
    assert render.is_hook_jump(spec, "FORWARD") is wanted
    assert not render.is_hook_jump(spec, "INPUT")


def test_input_hook_jump() -> None:
    spec = render.hook_jump_spec("INPUT")
    assert spec.endswith(f"-j {names.INPUT_CHAIN}")
    assert render.is_hook_jump(spec, "INPUT")


def test_render_restore_declares_fills_then_deletes() -> None:
    chain = model.Chain("PODWALL-A", (model.Rule("DROP", "podwall"),))
    text = render.render_restore(
        family="ipv4",
        replace=[chain],
        delete=["PODWALL-OLD"],
        hook_lines=["-I FORWARD 1 x"],
    )
    assert text == (
        "*filter\n:PODWALL-A - [0:0]\n:PODWALL-OLD - [0:0]\n"
        "-A PODWALL-A -m comment --comment podwall -j DROP\n"
        "-I FORWARD 1 x\n-X PODWALL-OLD\nCOMMIT\n"
    )


NEW = model.IPSet("PODWALL-S-A", "hash:net", "ipv4", ("10.0.0.0/8", "10.1.0.0/16 nomatch"))
PORTS = model.IPSet("PODWALL-S-B", "hash:ip,port", "ipv6", ("fd00::5,tcp:8080",))
HEADER_A = "hash:net family inet maxelem 1048576"
HEADER_B = "hash:ip,port family inet6 maxelem 1048576"
FILL = [
    "destroy PODWALL-S-A-T -exist",
    f"create PODWALL-S-A-T {HEADER_A}",
    "add PODWALL-S-A-T 10.0.0.0/8",
    "add PODWALL-S-A-T 10.1.0.0/16 nomatch",
    "destroy PODWALL-S-B-T -exist",
    f"create PODWALL-S-B-T {HEADER_B}",
    "add PODWALL-S-B-T fd00::5,tcp:8080",
]
SWAP_A = ["swap PODWALL-S-A-T PODWALL-S-A", "destroy PODWALL-S-A-T"]
SWAP_B = ["swap PODWALL-S-B-T PODWALL-S-B", "destroy PODWALL-S-B-T"]
IPSET_TEXTS = {
    "new-sets-are-renamed": ({}, [*FILL, "rename PODWALL-S-A-T PODWALL-S-A",
                                  "rename PODWALL-S-B-T PODWALL-S-B"]),
    "same-type-is-swapped": (
        {"PODWALL-S-A": render.SetHeader("hash:net", "inet", 1),
         "PODWALL-S-B": render.SetHeader("hash:ip,port", "inet6")},
        [*FILL, *SWAP_A, *SWAP_B],
    ),
    "other-type-is-destroyed-after-filling": (
        {"PODWALL-S-A": render.SetHeader("hash:ip", "inet"),
         "PODWALL-S-B": render.SetHeader("hash:ip,port", "inet")},
        [*FILL, "destroy PODWALL-S-A", "rename PODWALL-S-A-T PODWALL-S-A",
         "destroy PODWALL-S-B", "rename PODWALL-S-B-T PODWALL-S-B"],
    ),
}  # fmt: skip


@pytest.mark.parametrize(("existing", "lines"), IPSET_TEXTS.values(), ids=IPSET_TEXTS.keys())
def test_render_ipset_restore(existing: dict[str, render.SetHeader], lines: list[str]) -> None:
    text = render.render_ipset_restore(
        replace=[NEW, PORTS], destroy=["PODWALL-S-OLD"], existing=existing
    )
    assert text.splitlines() == [*lines, "destroy PODWALL-S-OLD"]


def test_render_ipset_restore_unknown_existing_creates_with_exist_and_swaps() -> None:
    lines = render.render_ipset_restore(replace=[NEW]).splitlines()
    assert lines == [*FILL[:4], f"create PODWALL-S-A {HEADER_A} -exist", *SWAP_A]


def test_render_ipset_restore_nothing_is_empty() -> None:
    assert render.render_ipset_restore() == ""
