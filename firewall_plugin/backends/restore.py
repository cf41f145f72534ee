"""Backends that apply rendered text with ``iptables-restore --noflush``.

``RestoreBackend(variant="nft")`` drives ``iptables-nft-restore``/
``ip6tables-nft-restore``; ``variant="legacy"`` the ``-legacy`` binaries.  One
restore per call and family declares only podwall's chains, so the rules of
kube-proxy and the primary CNI are never rewritten.  ``apply`` reads the
table first (``iptables-save``) unless the caller read what it needs itself
(``current``, from ``read_chains``: FORWARD, INPUT and a few named chains listed by
one ``iptables-restore`` of ``-S`` lines), says which podwall chains exist
(``existing``: then only ``-S FORWARD``/``-S INPUT``) or that the hook jumps are there
(``assume_jump``: then nothing, falling back to reading if refused).  A
restore built from the caller's ``current`` that the kernel refuses (it was
stale) is redone from a full read.
"""

from __future__ import annotations

from firewall_plugin import model, names, render, spawn
from firewall_plugin.backends.table import HOOKS, KernelTable
from firewall_plugin.errors import BackendError, TryAgainError

TYPE_CHECKING = False  # typing costs the CNI start-up ~4 ms (see values.py)
if TYPE_CHECKING:
    from collections.abc import Collection, Sequence

_TRANSIENT = ("Resource temporarily unavailable", "xtables lock", "Another app is currently")
NOTHING = render.render_restore(family="ipv4")  # a restore that would change nothing


def binary(variant: str, family: model.Family, tool: str) -> str:
    """e.g. ``ip6tables-nft-restore`` for ("nft", "ipv6", "restore")."""
    base = "ip6tables" if family == "ipv6" else "iptables"
    return f"{base}-{variant}-{tool}" if tool else f"{base}-{variant}"


def _run(argv: list[str], text: str = "") -> str:
    try:
        done = spawn.run(argv, text)
    except OSError as exc:
        raise BackendError(f"cannot run {argv[0]}: {exc.strerror}") from exc
    if done.returncode != 0:
        message = f"{' '.join(argv)} failed (exit {done.returncode}): {done.stderr.strip()}"
        if any(marker in done.stderr for marker in _TRANSIENT):
            raise TryAgainError(message)
        raise BackendError(message)
    return done.stdout


def parse_save(text: str) -> KernelTable:
    """Podwall's chains and all of FORWARD and INPUT from ``iptables-save -t filter``."""
    table = KernelTable()
    in_filter = False
    for line in text.splitlines():
        if line.startswith("*"):
            in_filter = line == "*filter"
        elif not in_filter:
            continue
        elif line.startswith(":"):
            name = line[1:].split(" ", 1)[0]
            if names.is_podwall_name(name):
                table.chains.setdefault(name, [])
        elif line.startswith("-A "):
            _add_rule(table, line)
    return table


def _add_rule(table: KernelTable, line: str) -> None:
    """File one ``-A CHAIN spec`` line under its hook or its podwall chain."""
    _, chain, spec = line.split(" ", 2)
    if chain in table.hooks:
        table.hooks[chain].append(spec)
    elif names.is_podwall_name(chain):
        table.chains.setdefault(chain, []).append(spec)


def parse_listing(text: str, table: KernelTable) -> int:
    """Add to ``table`` what ``-S`` lines of a restore printed (``-P FORWARD``
    opens FORWARD's listing, ``-P INPUT`` INPUT's, ``-N CHAIN`` a podwall chain's, ``-A`` lines are
    their rules); returns how many chain listings it saw begin."""
    begun = 0
    for line in text.splitlines():
        if line.startswith("-N ") or (line.startswith("-P ") and line.split(" ", 2)[1] in HOOKS):
            begun += 1
            name = line.split(" ", 2)[1]
            if names.is_podwall_name(name):
                table.chains.setdefault(name, [])
        elif line.startswith("-A "):
            _add_rule(table, line)
    return begun


def _only(table: KernelTable, chains: Sequence[str]) -> KernelTable:
    """``table`` with only the hooks and ``chains``."""
    kept = {name: specs for name, specs in table.chains.items() if name in chains}
    return KernelTable(chains=kept, hooks=table.hooks)


def hook_lines(current: KernelTable, *, keep: Collection[str]) -> list[str]:
    """``-D``/``-I HOOK`` lines that leave exactly one podwall jump at position
    1 of each hook in ``keep`` and none in the others."""
    lines = []
    for hook in HOOKS:
        rules = current.hooks.get(hook, [])
        jumps = [spec for spec in rules if render.is_hook_jump(spec, hook)]
        wanted = render.hook_jump_spec(hook)
        if hook in keep and rules[:1] == [wanted] and len(jumps) == 1:
            continue
        lines += [f"-D {hook} {spec}" for spec in jumps]
        if hook in keep:
            lines.append(f"-I {hook} 1 {wanted}")
    return lines


def hooks_after(
    present: Collection[str], replaced: Collection[str], gone: Collection[str]
) -> list[str]:
    """The hooks whose podwall chain exists after a write (so they keep a jump)."""
    return [
        hook
        for hook, chain in names.HOOK_CHAINS.items()
        if chain in replaced or (chain in present and chain not in gone)
    ]


class RestoreBackend:
    """Apply podwall's chains with one ``iptables-restore --noflush``."""

    def __init__(self, *, variant: str) -> None:
        if variant not in ("nft", "legacy"):
            raise ValueError(f"unknown iptables variant {variant!r}")
        self.variant = variant
        self.name = f"iptables-{variant}"

    def read(self, family: model.Family) -> KernelTable:
        return parse_save(_run([binary(self.variant, family, "save"), "-t", "filter"]))

    def read_hooks(self, family: model.Family) -> dict[str, list[str]]:
        """The rules of FORWARD and INPUT (the same spec text as iptables-save
        prints), without saving the whole table."""
        return self.read_chains(family, []).hooks

    def read_chains(self, family: model.Family, chains: Sequence[str]) -> KernelTable:
        """The hooks and those of ``chains`` that exist, without the rest of the
        table: one ``iptables-restore --noflush`` of ``-S CHAIN`` lines (a
        listing: it writes nothing and creates no table), milliseconds on nft
        where ``iptables-save`` of a large table takes a hundred.  A chain that
        does not exist stops the listing there: the chains after it are listed
        again (nft), or the whole table is read (legacy, where every run loads
        the whole table anyway)."""
        table = KernelTable()
        pending = [*HOOKS, *dict.fromkeys(name for name in chains if name not in HOOKS)]
        argv = [binary(self.variant, family, "restore"), "--noflush", "-w"]
        while pending:
            text = "".join(f"-S {name}\n" for name in pending)
            try:
                done = spawn.run(argv, f"*filter\n{text}COMMIT\n")
            except OSError as exc:
                raise BackendError(f"cannot run {argv[0]}: {exc.strerror}") from exc
            listed = parse_listing(done.stdout, table)
            if done.returncode == 0 and listed == len(pending):
                break
            message = f"listing {' '.join(pending)} failed: {done.stderr.strip()}"
            if any(marker in done.stderr for marker in _TRANSIENT):
                raise TryAgainError(message)
            if done.returncode == 0 or listed >= len(pending) or pending[listed] in HOOKS:
                raise BackendError(message)
            if self.variant == "legacy":
                return _only(self.read(family), chains)
            pending = pending[listed + 1 :]  # pending[listed] does not exist
        return table

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
        if assume_jump and self._apply_unread(family, replace=replace, delete=delete):
            return
        if current is None:
            self._apply_read(family, replace=replace, delete=delete, existing=existing)
            return
        try:
            self._apply_read(family, replace=replace, delete=delete, current=current)
        except TryAgainError:
            raise
        except BackendError:
            # ``current`` was stale (a rule to delete by spec, or a chain to
            # insert into, is gone): the kernel refused, nothing changed
            self._apply_read(family, replace=replace, delete=delete)

    def _apply_read(
        self,
        family: model.Family,
        *,
        replace: Sequence[model.Chain],
        delete: Sequence[str],
        existing: Collection[str] | None = None,
        current: KernelTable | None = None,
    ) -> None:
        """``apply`` from ``current``, or from what it reads first."""
        replaced = {chain.name for chain in replace}
        if existing is None or current is not None:
            # a chain of replace that current lacks is declared afresh (created,
            # or flushed and refilled): the same outcome as inserting into it
            current = self.read(family) if current is None else current
            present: Collection[str] = current.chains
            gone = [name for name in dict.fromkeys(delete) if name in present]
        else:
            # ":X" then "-X X" in one restore is no error for an absent chain,
            # so the deletes need no check; a jump in a hook proves its
            # podwall chain exists even if the caller did not know it
            current = KernelTable(hooks=self.read_hooks(family))
            jumped = {
                chain
                for hook, chain in names.HOOK_CHAINS.items()
                if any(render.is_hook_jump(spec, hook) for spec in current.hooks[hook])
            }
            present = {*existing, *jumped}
            gone = list(dict.fromkeys(delete))
        gone = [name for name in gone if name not in replaced]
        keep = hooks_after(present, replaced, gone)
        text = render.render_restore(
            family=family,
            replace=replace,
            delete=gone,
            hook_lines=hook_lines(current, keep=keep),
            current=current.chains,
        )
        if text != NOTHING:
            self.restore(family, text)

    def _apply_unread(
        self, family: model.Family, *, replace: Sequence[model.Chain], delete: Sequence[str]
    ) -> bool:
        """``apply`` in one restore without reading the table first, for a
        caller that knows podwall's hook jumps are there: the text removes
        each jump (and puts it back as rule 1 when its chain stays), so the
        kernel refuses it when a jump is missing, and deleting a hook chain
        fails while another jump still uses it.  Chains to delete are
        declared first, so absent ones are no error.  False, having changed
        nothing (a restore is one transaction), when refused."""
        replaced = {chain.name for chain in replace}
        lines = []
        for hook, chain in names.HOOK_CHAINS.items():
            jump = render.hook_jump_spec(hook)
            lines.append(f"-D {hook} {jump}")
            if chain in replaced:
                lines.append(f"-I {hook} 1 {jump}")
        text = render.render_restore(
            family=family,
            replace=replace,
            delete=[name for name in dict.fromkeys(delete) if name not in replaced],
            hook_lines=lines,
        )
        try:
            self.restore(family, text)
        except BackendError:
            return False
        return True

    def remove_all(self, family: model.Family) -> None:
        current = self.read(family)
        lines = hook_lines(current, keep=())
        if not current.chains and not lines:
            return
        text = render.render_restore(family=family, delete=sorted(current.chains), hook_lines=lines)
        self.restore(family, text)

    def restore(self, family: model.Family, text: str) -> None:
        """Run ``iptables-restore --noflush -w`` with ``text``."""
        _run([binary(self.variant, family, "restore"), "--noflush", "-w"], text)


def _rule_count(variant: str) -> tuple[int, bool]:
    try:
        text = _run([binary(variant, "ipv4", "save")])
    except BackendError:
        return 0, False
    lines = text.splitlines()
    rules = sum(1 for line in lines if line.startswith("-A "))
    kube = any(line.startswith(":KUBE-") for line in lines)
    return rules, kube


def detect_variant() -> str:
    """``iptables-nft`` or ``iptables-legacy``: what the node already uses."""
    nft_rules, nft_kube = _rule_count("nft")
    legacy_rules, legacy_kube = _rule_count("legacy")
    if legacy_kube and not nft_kube:
        return "iptables-legacy"
    if nft_kube and not legacy_kube:
        return "iptables-nft"
    return "iptables-legacy" if legacy_rules > nft_rules else "iptables-nft"
