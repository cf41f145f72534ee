"""Render the ruleset model as ``iptables-restore`` and ``ipset restore`` text.

The rule text follows ``iptables-save``'s own order and spelling, so that a
rendered rule can be compared with what the kernel reports.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from firewall_plugin import model, names

FORWARD_JUMP_COMMENT = names.comment("dispatch to per-pod chains")
MAX_SET_ENTRIES = 1048576  # fixed: `create -exist` fails when parameters differ


def quote(value: str) -> str:
    """Quote a value the way iptables-save does when it holds white space."""
    if value == "" or any(c.isspace() for c in value):
        return f'"{value}"'
    return value


def _options(options: Iterable[model.Option]) -> list[str]:
    words: list[str] = []
    for option, value in options:
        if option.startswith("!"):
            words.append("!")
            option = option[1:]
        words.append(f"--{option}")
        if value:
            words.extend(value.split(" ") if option in ("match-set",) else [quote(value)])
    return words


def _address(value: str, family: model.Family) -> str:
    if "/" in value:
        return value
    return f"{value}/{128 if family == 'ipv6' else 32}"


def rule_spec(rule: model.Rule, family: model.Family = "ipv4") -> str:
    """The rule's arguments after ``-A CHAIN`` (iptables-save order)."""
    words: list[str] = []
    if rule.source:
        words += ["-s", _address(rule.source, family)]
    if rule.destination:
        words += ["-d", _address(rule.destination, family)]
    if rule.in_interface:
        words += ["-i", rule.in_interface]
    if rule.out_interface:
        words += ["-o", rule.out_interface]
    if rule.protocol:
        words += ["-p", rule.protocol]
    for match in rule.matches:
        words += ["-m", match.module, *_options(match.options)]
    words += ["-m", "comment", "--comment", quote(rule.comment)]
    words += ["-g" if rule.goto else "-j", rule.target, *_options(rule.target_options)]
    return " ".join(words)


def render_rule(chain: str, rule: model.Rule, family: model.Family = "ipv4") -> str:
    """``-A CHAIN <spec>``."""
    return f"-A {chain} {rule_spec(rule, family)}"


def forward_jump_spec() -> str:
    """The spec of the one FORWARD rule podwall owns."""
    return f"-m comment --comment {quote(FORWARD_JUMP_COMMENT)} -j {names.FORWARD_CHAIN}"


def render_restore(
    *,
    family: model.Family,
    replace: Sequence[model.Chain] = (),
    delete: Sequence[str] = (),
    forward_lines: Sequence[str] = (),
) -> str:
    """Text for one ``iptables-restore --noflush`` of the filter table.

    Every chain in ``replace`` is declared (created, or flushed when it exists)
    and refilled; ``forward_lines`` (e.g. ``-D FORWARD …``/``-I FORWARD 1 …``)
    follow; chains in ``delete`` are then flushed and removed, after the rules
    that referenced them were rewritten.
    """
    lines = ["*filter"]
    lines += [f":{chain.name} - [0:0]" for chain in replace]
    lines += [f":{name} - [0:0]" for name in delete]
    for chain in replace:
        lines += [render_rule(chain.name, rule, family) for rule in chain.rules]
    lines += list(forward_lines)
    lines += [f"-X {name}" for name in delete]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def ipset_family(family: model.Family) -> str:
    return "inet6" if family == "ipv6" else "inet"


def render_ipset_restore(
    *, replace: Sequence[model.IPSet] = (), destroy: Sequence[str] = ()
) -> str:
    """Text for one ``ipset restore``: each set is filled under a temporary
    name and swapped in atomically; ``destroy`` names go last."""
    lines: list[str] = []
    for ipset in replace:
        temp = ipset.name + names.SWAP_SUFFIX
        header = f"{ipset.kind} family {ipset_family(ipset.family)} maxelem {MAX_SET_ENTRIES}"
        lines.append(f"create {ipset.name} {header} -exist")
        lines.append(f"create {temp} {header} -exist")
        lines.append(f"flush {temp}")
        lines += [f"add {temp} {entry}" for entry in ipset.entries]
        lines.append(f"swap {temp} {ipset.name}")
        lines.append(f"destroy {temp}")
    lines += [f"destroy {name}" for name in destroy]
    return "\n".join(lines) + ("\n" if lines else "")
