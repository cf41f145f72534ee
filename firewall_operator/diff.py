"""Plan the smallest kernel write that turns what is known into what is desired.

The applier knows each chain and set either as the model object it last
wrote (compared by equality: cheap) or as what it read from the kernel
(iptables-save specs, ``ipset save`` headers and entries: compared as text,
after normalising the spellings the kernel changes).  This module compares
and plans; it never reads or writes the kernel.

Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from firewall_plugin import model, names, render

Specs = tuple[str, ...]
KnownChain = model.Chain | Specs


@dataclass(frozen=True, slots=True)
class KernelSet:
    """A podwall set as ``ipset save`` shows it.  ``standard`` is False when its
    header has options podwall does not create (another ``maxelem``, counters,
    timeouts...): it is refilled even when its entries are right."""

    name: str
    kind: str
    family: model.Family
    entries: frozenset[str]
    standard: bool


KnownSet = model.IPSet | KernelSet


@dataclass(frozen=True, slots=True)
class ChainPlan:
    """One family's chain write: chains to (re)write and stale ones to delete."""

    replace: tuple[model.Chain, ...] = ()
    delete: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.replace and not self.delete

    @property
    def rules(self) -> int:
        return sum(len(chain.rules) for chain in self.replace)


@dataclass(frozen=True, slots=True)
class SetDelta:
    """Entries to delete from and add to a set the applier wrote itself."""

    name: str
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SetPlan:
    """Sets to fill (atomic swap), to change entry by entry (small changes to
    sets known from memory), to destroy after the chains stop using them, and
    to destroy *before* filling because their kernel header clashes."""

    replace: tuple[model.IPSet, ...] = ()
    destroy: tuple[str, ...] = ()
    recreate: tuple[str, ...] = ()
    update: tuple[SetDelta, ...] = ()

    @property
    def entries(self) -> int:
        full = sum(len(ipset.entries) for ipset in self.replace)
        return full + sum(len(d.add) + len(d.remove) for d in self.update)

    @property
    def written(self) -> int:
        return len(self.replace) + len(self.update)


def chain_specs(chain: model.Chain, family: model.Family) -> Specs:
    """The chain's rules as iptables-save prints them (after ``-A NAME``)."""
    return tuple(render.rule_spec(rule, family) for rule in chain.rules)


def chain_matches(desired: model.Chain, known: KnownChain, family: model.Family) -> bool:
    if isinstance(known, model.Chain):
        return desired == known
    return chain_specs(desired, family) == known


def plan_chains(
    *,
    family: model.Family,
    desired: Mapping[str, model.Chain],
    known: Mapping[str, KnownChain],
) -> ChainPlan:
    """Rewrite desired chains that are unknown or differ; delete known podwall
    chains that are not desired."""
    replace = [
        chain
        for name, chain in sorted(desired.items())
        if name not in known or not chain_matches(chain, known[name], family)
    ]
    delete = sorted(name for name in known if name not in desired)
    return ChainPlan(tuple(replace), tuple(delete))


def normalize_address(text: str) -> str:
    """``10.0.0.5/32`` → ``10.0.0.5``; IPv6 compressed; other CIDRs kept."""
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return text
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return str(net)


def normalize_entry(entry: str) -> str:
    """An ipset entry as ``ipset save`` spells it (``ADDR[,proto:port][ nomatch]``)."""
    element, _, flags = entry.partition(" ")
    parts = element.split(",")
    parts[0] = normalize_address(parts[0])
    rest = " ".join(flags.split())
    return ",".join(parts) + (f" {rest}" if rest else "")


def set_matches(desired: model.IPSet, known: KnownSet) -> bool:
    if isinstance(known, model.IPSet):
        return desired == known
    if not known.standard or (known.kind, known.family) != (desired.kind, desired.family):
        return False
    return frozenset(normalize_entry(entry) for entry in desired.entries) == known.entries


def clashes(desired: model.IPSet, known: KnownSet) -> bool:
    """True when the kernel set cannot be swapped with the new one (the kernel
    swaps only sets of one type and family): it must be destroyed first."""
    return (known.kind, known.family) != (desired.kind, desired.family)


def delta(desired: model.IPSet, known: KnownSet) -> SetDelta | None:
    """The entry changes from ``known`` (a set this applier wrote, same type)
    to ``desired``, when smaller than refilling the set; else None."""
    if not isinstance(known, model.IPSet) or clashes(desired, known):
        return None
    old, new = set(known.entries), set(desired.entries)
    add, remove = sorted(new - old), sorted(old - new)
    if len(add) + len(remove) >= len(new):
        return None
    return SetDelta(desired.name, tuple(add), tuple(remove))


def plan_sets(*, desired: Mapping[str, model.IPSet], known: Mapping[str, KnownSet]) -> SetPlan:
    replace, update = [], []
    for name, ipset in sorted(desired.items()):
        if name in known and set_matches(ipset, known[name]):
            continue
        change = delta(ipset, known[name]) if name in known else None
        if change is None:
            replace.append(ipset)
        else:
            update.append(change)
    recreate = sorted(
        name for name, ipset in desired.items() if name in known and clashes(ipset, known[name])
    )
    destroy = sorted(name for name in known if name not in desired)
    return SetPlan(tuple(replace), tuple(destroy), tuple(recreate), tuple(update))


def render_set_updates(updates: Iterable[SetDelta]) -> str:
    """``ipset restore`` text: removals first (an entry may come back with
    other flags, e.g. ``nomatch``), then additions; both tolerate no-ops."""
    lines = []
    for change in updates:
        lines += [f"del {change.name} {entry.partition(' ')[0]} -exist" for entry in change.remove]
        lines += [f"add {change.name} {entry} -exist" for entry in change.add]
    return "\n".join(lines) + ("\n" if lines else "")


def _header(words: list[str]) -> tuple[str, model.Family, bool]:
    kind, options = words[2], words[3:]
    family: model.Family = "ipv4"
    standard = kind in ("hash:ip", "hash:net", "hash:ip,port", "hash:net,port")
    ignored = {"hashsize", "bucketsize", "initval"}
    index = 0
    while index < len(options):
        key = options[index]
        value = options[index + 1] if index + 1 < len(options) else ""
        if key == "family":
            family = "ipv6" if value == "inet6" else "ipv4"
        elif key == "maxelem":
            standard = standard and value == str(render.MAX_SET_ENTRIES)
        elif key not in ignored:
            standard = False  # counters, comment, timeout, netmask... podwall sets have none
            index -= 1  # flags without a value
        index += 2
    return kind, family, standard


def parse_ipset_save(text: str) -> dict[str, KernelSet]:
    """podwall's sets (by name) from ``ipset save`` output.  Temporary swap
    sets (``…-T``) are listed too: they are stale by construction."""
    headers: dict[str, tuple[str, model.Family, bool]] = {}
    entries: dict[str, set[str]] = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) < 3 or not names.is_podwall_name(words[1]):
            continue
        if words[0] == "create":
            headers[words[1]] = _header(words)
            entries.setdefault(words[1], set())
        elif words[0] == "add":
            entries.setdefault(words[1], set()).add(" ".join(words[2:]))
    return {
        name: KernelSet(name, kind, family, frozenset(entries.get(name, ())), standard)
        for name, (kind, family, standard) in headers.items()
    }


def references(known: KnownChain, set_names: Iterable[str], family: model.Family) -> bool:
    """True when the chain matches on any of ``set_names``."""
    wanted = set(set_names)
    if not wanted:
        return False
    specs = chain_specs(known, family) if isinstance(known, model.Chain) else known
    for spec in specs:
        words = spec.split()
        for index, word in enumerate(words[:-1]):
            if word == "--match-set" and words[index + 1] in wanted:
                return True
    return False


def hooks_in_place(hooks: Mapping[str, Iterable[str]], wanted: Iterable[str]) -> bool:
    """True when rule 1 of each hook of ``wanted`` is podwall's jump, with no
    other jump of podwall's in that hook."""
    for hook in wanted:
        rules = list(hooks.get(hook, ()))
        jumps = [spec for spec in rules if render.is_hook_jump(spec, hook)]
        if rules[:1] != [render.hook_jump_spec(hook)] or len(jumps) != 1:
            return False
    return True
