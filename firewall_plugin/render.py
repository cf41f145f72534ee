"""Render the ruleset model as ``iptables-restore`` and ``ipset restore`` text.

The rule text follows ``iptables-save``'s own order and spelling (addresses
with their prefix length, strings quoted the way ``xtables_save_string``
quotes them), so that a rendered rule can be compared with what the kernel
reports.  The ``iptc`` backend builds from the same model, not from this text.

Pure: no I/O.
"""

from __future__ import annotations

from firewall_plugin import addresses, model, names
from firewall_plugin.values import Frozen, init_fields

TYPE_CHECKING = False  # typing costs the CNI start-up ~4 ms (see values.py)
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

HOOK_JUMP_COMMENT = names.comment("dispatch to per-pod chains")
MAX_SET_ENTRIES = 1048576
#: options whose values iptables-save prints with ``xtables_save_string``
STRING_OPTIONS = frozenset({"comment", "log-prefix", "nflog-prefix"})
#: options whose value is several words (``--match-set NAME src,dst``)
MULTI_WORD_OPTIONS = frozenset({"match-set"})
_BARE_CHARS = frozenset("_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def quote(value: str) -> str:
    """Quote a value when it holds white space (or is empty), escaping quotes."""
    if value == "" or any(c.isspace() or c in "\"'\\" for c in value):
        return save_string(value)
    return value


def save_string(value: str) -> str:
    """Spell a string option as ``iptables-save`` does: bare when it holds only
    ``[A-Za-z0-9_-]``, else in double quotes with ``"``, ``'`` and ``\\`` escaped."""
    if value and all(c in _BARE_CHARS for c in value):
        return value
    escaped = "".join("\\" + c if c in "\"'\\" else c for c in value)
    return f'"{escaped}"'


def option_words(option: str, value: str) -> list[str]:
    """``("!match-set", "S src")`` → ``["!", "--match-set", "S", "src"]``."""
    words: list[str] = []
    if option.startswith("!"):
        words.append("!")
        option = option[1:]
    words.append(f"--{option}")
    if value:
        if option in MULTI_WORD_OPTIONS:
            words.extend(value.split())
        elif option in STRING_OPTIONS:
            words.append(save_string(value))
        else:
            words.append(quote(value))
    return words


def _options(options: Iterable[model.Option]) -> list[str]:
    return [word for option, value in options for word in option_words(option, value)]


def address(value: str, family: model.Family) -> str:
    """``10.0.0.5`` → ``10.0.0.5/32``; ``10.1.2.3/16`` → ``10.1.0.0/16``;
    IPv6 compressed and lower-case, as iptables-save prints them."""
    del family  # the address itself tells; kept for callers' symmetry
    return addresses.network(value)


def rule_spec(rule: model.Rule, family: model.Family = "ipv4") -> str:
    """The rule's arguments after ``-A CHAIN`` (iptables-save order)."""
    words: list[str] = []
    if rule.source:
        words += ["-s", address(rule.source, family)]
    if rule.destination:
        words += ["-d", address(rule.destination, family)]
    if rule.in_interface:
        words += ["-i", rule.in_interface]
    if rule.out_interface:
        words += ["-o", rule.out_interface]
    if rule.protocol:
        words += ["-p", rule.protocol]
    for match in rule.matches:
        words += ["-m", match.module, *_options(match.options)]
    words += ["-m", "comment", "--comment", save_string(rule.comment)]
    words += ["-g" if rule.goto else "-j", rule.target, *_options(rule.target_options)]
    return " ".join(words)


def render_rule(chain: str, rule: model.Rule, family: model.Family = "ipv4") -> str:
    """``-A CHAIN <spec>``."""
    return f"-A {chain} {rule_spec(rule, family)}"


def hook_jump_rule(hook: str) -> model.Rule:
    """The one rule podwall owns in built-in chain ``hook`` (FORWARD, INPUT):
    a jump to its own chain (``names.HOOK_CHAINS``)."""
    return model.Rule(names.HOOK_CHAINS[hook], HOOK_JUMP_COMMENT)


def hook_jump_spec(hook: str) -> str:
    """The spec of podwall's jump in built-in chain ``hook``."""
    return rule_spec(hook_jump_rule(hook))


def is_hook_jump(spec: str, hook: str) -> bool:
    """True for a spec of ``hook`` that jumps (or goes) to podwall's chain."""
    words = spec.split()
    return len(words) >= 2 and words[-2] in ("-j", "-g") and words[-1] == names.HOOK_CHAINS[hook]


def render_restore(
    *,
    family: model.Family,
    replace: Sequence[model.Chain] = (),
    delete: Sequence[str] = (),
    hook_lines: Sequence[str] = (),
    current: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """Text for one ``iptables-restore --noflush`` of the filter table.

    Every chain in ``replace`` is declared (created, or flushed when it exists)
    and refilled; ``hook_lines`` (e.g. ``-D FORWARD …``/``-I INPUT 1 …``)
    follow; chains in ``delete`` are then flushed and removed, after the rules
    that referenced them were rewritten.

    ``current`` maps chains that exist to their rule specs as iptables-save
    prints them.  A chain of ``replace`` whose current rules all appear, in
    order, among its new ones is not flushed: the missing rules are inserted
    at their places (``insert_lines``).  Same end state, but the transaction
    then deletes nothing, and with nf_tables every transaction that deletes
    waits ~10 ms for an RCU grace period (docs/facts.md).  A chain whose new rules
    all appear, in order, among its current ones loses only the others, each
    deleted by its spec (``delete_lines``): on a loaded node, deleting one
    pod's two dispatch rules costs half of rewriting ~200.  A rule deleted by
    spec that is no longer there makes the kernel refuse the whole restore
    (nothing changes), so a stale ``current`` never deletes the wrong rule.
    """
    current = current or {}
    fill: list[str] = []
    declared: list[str] = []
    for chain in replace:
        specs = [rule_spec(rule, family) for rule in chain.rules]
        have = current.get(chain.name)
        edits = insert_lines(chain.name, have, specs)
        if edits is None:
            edits = delete_lines(chain.name, have, specs)
        if edits is None:
            declared.append(chain.name)
            fill += [f"-A {chain.name} {spec}" for spec in specs]
        else:
            fill += edits
    lines = ["*filter"]
    lines += [f":{name} - [0:0]" for name in declared]
    lines += [f":{name} - [0:0]" for name in delete]
    lines += fill
    lines += list(hook_lines)
    lines += [f"-X {name}" for name in delete]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def insert_lines(chain: str, have: Sequence[str] | None, want: Sequence[str]) -> list[str] | None:
    """``-I CHAIN <n> <spec>`` lines that turn ``have`` into ``want`` when
    ``have`` is a subsequence of ``want`` (nothing to delete), else None."""
    if have is None:
        return None
    lines: list[str] = []
    matched = 0
    for position, spec in enumerate(want, start=1):
        if matched < len(have) and have[matched] == spec:
            matched += 1
        else:
            lines.append(f"-I {chain} {position} {spec}")
    return lines if matched == len(have) else None


def delete_lines(chain: str, have: Sequence[str] | None, want: Sequence[str]) -> list[str] | None:
    """``-D CHAIN <spec>`` lines that turn ``have`` into ``want`` when ``want``
    is a subsequence of ``have`` (nothing to insert), else None.  Also None
    when a rule to delete occurs more than once in ``have``: ``-D`` by spec
    removes the first match, which may be one that should stay."""
    if have is None:
        return None
    lines: list[str] = []
    matched = 0
    for spec in have:
        if matched < len(want) and want[matched] == spec:
            matched += 1
        elif have.count(spec) > 1:
            return None
        else:
            lines.append(f"-D {chain} {spec}")
    return lines if matched == len(want) else None


def ipset_family(family: model.Family) -> str:
    """``inet`` or ``inet6``: ipset's spelling of a family."""
    return "inet6" if family == "ipv6" else "inet"


class SetHeader(Frozen):
    """What ``ipset list -t`` says about an existing set."""

    __slots__ = ("family", "kind", "references")
    kind: str
    family: str  # ``inet`` or ``inet6``
    references: int

    def __init__(self, kind: str, family: str, references: int = 0) -> None:
        init_fields(self, kind, family, references)


def temp_name(name: str) -> str:
    """The temporary set a replacement is filled in before the swap."""
    return name + names.SWAP_SUFFIX


def render_ipset_restore(
    *,
    replace: Sequence[model.IPSet] = (),
    destroy: Sequence[str] = (),
    existing: Mapping[str, SetHeader] | None = None,
) -> str:
    """Text for one ``ipset restore`` that replaces ``replace`` and destroys
    ``destroy`` (names that must exist).

    Phase one fills every set under its temporary ``-T`` name; only when all
    are filled does phase two put them in place: an existing set of the same
    type and family is swapped (rules that reference it never see it missing
    or half filled), a new one is renamed, an existing one of another type or
    family (which cannot be swapped) is destroyed and replaced (the kernel
    refuses while a rule still uses it).  ``existing`` maps the sets present
    now to their headers; ``None`` means unknown: every set is then created
    with ``-exist`` and swapped.  A failure in phase one changes no set.
    """
    fill: list[str] = []
    commit: list[str] = []
    for ipset in replace:
        temp = temp_name(ipset.name)
        header = f"{ipset.kind} family {ipset_family(ipset.family)} maxelem {MAX_SET_ENTRIES}"
        fill += [f"destroy {temp} -exist", f"create {temp} {header}"]
        fill += [f"add {temp} {entry}" for entry in ipset.entries]
        if existing is None:
            fill.append(f"create {ipset.name} {header} -exist")
        commit += _put_in_place(ipset, existing)
    lines = fill + commit + [f"destroy {name}" for name in destroy]
    return "\n".join(lines) + ("\n" if lines else "")


def _put_in_place(ipset: model.IPSet, existing: Mapping[str, SetHeader] | None) -> list[str]:
    temp = temp_name(ipset.name)
    swap = [f"swap {temp} {ipset.name}", f"destroy {temp}"]
    if existing is None:
        return swap
    current = existing.get(ipset.name)
    if current is None:
        return [f"rename {temp} {ipset.name}"]
    if (current.kind, current.family) == (ipset.kind, ipset_family(ipset.family)):
        return swap
    return [f"destroy {ipset.name}", f"rename {temp} {ipset.name}"]
