"""The python-iptables backend: podwall's chains written through libiptc.

Legacy tables only (libiptc never sees iptables-nft's rules).  One call is one
transaction: the rules are built from the model first, then, holding
``/run/xtables.lock`` from refresh to commit (libiptc does not take it), the
table is refreshed, changed and committed with autocommit off; a commit that
fails with EAGAIN (another writer changed the table meanwhile) is retried on a
fresh snapshot, because libiptc would otherwise lose one of the updates
silently (docs/facts.md).  ``read`` runs ``iptables-legacy-save``: the same text,
and the same parser, as the restore backends.

``iptc`` is imported on first use only (never by importing this module), with
the environment that makes the import cheap (``iptc_loader``).  This module
must not touch nft tables or any chain it is not told to.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

from firewall_plugin import locking, model, names, render
from firewall_plugin.backends import iptc_loader, restore
from firewall_plugin.backends.base import KernelTable
from firewall_plugin.backends.table import HOOKS
from firewall_plugin.errors import BackendError, PodwallError, TryAgainError

ATTEMPTS = 5
RETRY_DELAY = 0.01
_EAGAIN_TEXT = os.strerror(errno.EAGAIN)

#: a rule built for python-iptables (``iptc.Rule`` or ``iptc.Rule6``)
IptcRule = Any
#: a python-iptables table (``iptc.Table`` or ``iptc.Table6``)
IptcTable = Any


#: python-iptables knows IPv6 ICMP only as "icmpv6", iptables-save says
#: "ipv6-icmp": hand it numbers, which every version understands.
_PROTOCOL_NUMBERS = {"icmp": "1", "tcp": "6", "udp": "17", "ipv6-icmp": "58", "sctp": "132"}


def _build_rule(rule: model.Rule, family: model.Family) -> IptcRule:
    """The python-iptables rule for ``rule``, in iptables-save order.

    Call it only inside a transaction: a jump to a user chain is resolved in
    the cached filter table, whose handle is closed between transactions.
    Raises BackendError when python-iptables or an extension refuses a field.
    """
    iptc = iptc_loader.load()
    try:
        built = iptc.Rule6() if family == "ipv6" else iptc.Rule()
        if rule.source:
            built.src = render.address(rule.source, family)
        if rule.destination:
            built.dst = render.address(rule.destination, family)
        if rule.in_interface:
            built.in_interface = rule.in_interface
        if rule.out_interface:
            built.out_interface = rule.out_interface
        if rule.protocol:
            built.protocol = _PROTOCOL_NUMBERS.get(rule.protocol, rule.protocol)
        for match in rule.matches:
            _set_options(built.create_match(match.module), match.options)
        built.create_match("comment").set_parameter("comment", [rule.comment])
        target = built.create_target(rule.target, goto=rule.goto)
        _set_options(target, rule.target_options)
    except BackendError:
        raise
    except Exception as exc:  # python-iptables raises many kinds for one bad value
        raise BackendError(
            f"python-iptables refuses rule {render.rule_spec(rule)!r}: {exc}"
        ) from exc
    return built


def _set_options(module: Any, options: Sequence[model.Option]) -> None:
    for option, value in options:
        negated = option.startswith("!")
        name = option.removeprefix("!")
        words = value.split() if name in render.MULTI_WORD_OPTIONS else ([value] if value else [])
        module.set_parameter(name, ["!", *words] if negated else words)


def _is_jump(rule: IptcRule, hook: str) -> bool:
    return rule.target is not None and rule.target.name == names.HOOK_CHAINS[hook]


def _signature(rule: IptcRule) -> tuple[Any, ...]:
    matches = [(match.name, match.get_all_parameters()) for match in rule.matches]
    ends = (rule.src, rule.dst, rule.in_interface, rule.out_interface, rule.protocol)
    return (rule.target.name, rule.target.goto, matches, ends)


class IptcBackend:
    """Write podwall's chains with python-iptables, one checked commit per call."""

    name = "iptc"

    def __init__(self, *, before_commit: Callable[[], None] | None = None) -> None:
        """``before_commit`` runs inside each attempt just before the commit;
        tests use it to let a foreign writer change the table (EAGAIN)."""
        self._before_commit = before_commit

    def read(self, family: model.Family) -> KernelTable:
        """Podwall's chains and the hooks as ``iptables-legacy-save`` prints them."""
        return restore.RestoreBackend(variant="legacy").read(family)

    def read_hooks(self, family: model.Family) -> dict[str, list[str]]:
        """The hooks' rules as ``iptables-legacy -S`` prints them."""
        return restore.RestoreBackend(variant="legacy").read_hooks(family)

    def read_chains(self, family: model.Family, chains: Sequence[str]) -> KernelTable:
        """The hooks and those of ``chains`` that exist, listed by ``iptables-legacy``."""
        return restore.RestoreBackend(variant="legacy").read_chains(family, chains)

    def apply(
        self,
        family: model.Family,
        *,
        replace: Sequence[model.Chain],
        delete: Sequence[str] = (),
        assume_jump: bool = False,
        existing: Collection[str] | None = None,
        current: KernelTable | None = None,
    ) -> None:
        # reading costs nothing here: libiptc loads the table anyway
        del assume_jump, existing, current

        def change(table: IptcTable) -> bool:
            _replace_chains(table, family, replace=replace, delete=delete)
            return True

        self._transaction(family, change)

    def remove_all(self, family: model.Family) -> None:
        def change(table: IptcTable) -> bool:
            chains = sorted(c.name for c in table.chains if names.is_podwall_name(c.name))
            jumps = [
                rule for hook in HOOKS for rule in _hook(table, hook).rules if _is_jump(rule, hook)
            ]
            if not chains and not jumps:
                return False
            for name in chains:
                table.flush_entries(name)
            for hook in HOOKS:
                _set_hook_jump(table, hook, None)
            for name in chains:
                table.delete_chain(name)
            return True

        self._transaction(family, change)

    def _transaction(self, family: model.Family, change: Callable[[IptcTable], bool]) -> None:
        """Refresh, ``change`` and commit the filter table under the xtables
        lock; retry on EAGAIN.  ``change`` returns False when nothing changed."""
        iptc = iptc_loader.load()
        table_class = iptc.Table6 if family == "ipv6" else iptc.Table
        for attempt in range(1, ATTEMPTS + 1):
            try:
                with locking.xtables_lock():
                    self._attempt(table_class, change)
                return
            except PodwallError:
                raise
            except Exception as exc:  # IPTCError, XTablesError, ValueError...
                if _EAGAIN_TEXT not in str(exc) or attempt == ATTEMPTS:
                    raise _mapped(exc, family, attempt) from exc
            time.sleep(RETRY_DELAY * attempt)

    def _attempt(self, table_class: Any, change: Callable[[IptcTable], bool]) -> None:
        table = table_class(table_class.FILTER, autocommit=False)
        try:
            table.refresh()
            if change(table):
                if self._before_commit is not None:
                    self._before_commit()
                table.commit()
        finally:
            table.close()  # drop the snapshot and any uncommitted change


def _mapped(exc: Exception, family: model.Family, attempt: int) -> BackendError:
    message = f"python-iptables {family} filter table: {exc}"
    if _EAGAIN_TEXT in str(exc):
        return TryAgainError(f"{message} (after {attempt} attempts)")
    return BackendError(message)


def _hook(table: IptcTable, hook: str) -> Any:
    return iptc_loader.load().Chain(table, hook)


def _replace_chains(
    table: IptcTable,
    family: model.Family,
    *,
    replace: Sequence[model.Chain],
    delete: Sequence[str],
) -> None:
    """The restore backend's ``render_restore`` order, on a libiptc handle.

    Rules are built here, after their target chains exist in the snapshot:
    python-iptables looks a jump's target up in the cached table.
    """
    existing = {chain.name for chain in table.chains}
    replaced = {chain.name for chain in replace}
    gone = [n for n in dict.fromkeys(delete) if n in existing and n not in replaced]
    for name in replaced:
        if name in existing:
            table.flush_entries(name)
        else:
            table.create_chain(name)
    for name in gone:
        table.flush_entries(name)
    chain_class = iptc_loader.load().Chain
    for chain in replace:
        target = chain_class(table, chain.name)
        for rule in chain.rules:
            target.append_rule(_build_rule(rule, family))
    keep = restore.hooks_after(existing, replaced, gone)
    for hook in HOOKS:
        jump = _build_rule(render.hook_jump_rule(hook), family) if hook in keep else None
        _set_hook_jump(table, hook, jump)
    for name in gone:
        table.delete_chain(name)


def _set_hook_jump(table: IptcTable, hook: str, jump: IptcRule | None) -> None:
    """Leave exactly one jump of ``hook``, ``jump``, at position 1 (or none)."""
    chain = _hook(table, hook)
    rules = chain.rules
    jumps = [rule for rule in rules if _is_jump(rule, hook)]
    if (
        jump is not None
        and len(jumps) == 1
        and _is_jump(rules[0], hook)
        and _signature(rules[0]) == _signature(jump)
    ):
        return
    for rule in jumps:
        chain.delete_rule(rule)
    if jump is not None:
        chain.insert_rule(jump, 0)
