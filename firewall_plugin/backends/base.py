"""The backend protocol: read and atomically rewrite podwall's chains.

Every backend passes the same kernel tests (``tests/kernel/test_backends.py``).
Callers hold ``locking.podwall_lock`` around read-modify-write sequences.
The CNI plugin's start-up imports this module only for type checking (it
needs ``typing``); ``KernelTable`` lives in ``backends.table``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol

from firewall_plugin import model
from firewall_plugin.backends.table import KernelTable

__all__ = ["Backend", "KernelTable"]


class Backend(Protocol):
    """One way of writing iptables rules (restore text, python-iptables...)."""

    #: ``iptables-nft``, ``iptables-legacy`` or ``iptc``
    name: str

    def read(self, family: model.Family) -> KernelTable:
        """Return podwall's chains and the hook chains (FORWARD, INPUT) of ``family``.

        Read-only; never creates anything.  Raises BackendError.
        """
        ...

    def read_hooks(self, family: model.Family) -> dict[str, list[str]]:
        """Every rule of FORWARD and INPUT of ``family``, as
        ``read(family).hooks`` spells them, without reading the rest of the
        table (milliseconds, where a full read of a large table takes a
        hundred).

        Read-only.  Raises BackendError.
        """
        ...

    def read_chains(self, family: model.Family, chains: Sequence[str]) -> KernelTable:
        """The hooks and those of the podwall ``chains`` that exist, as
        ``read(family)`` spells them, without the rest of the table (what the
        CNI plugin needs: a few chains, where the agent may have written
        thousands).

        Read-only; never creates anything.  Raises BackendError.
        """
        ...

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
        """Write in one atomic transaction of the filter table of ``family``.

        Each chain of ``replace`` is created, or flushed, and filled with its
        rules; the chains named in ``delete`` are flushed and removed (a name
        that does not exist is ignored); for each hook whose podwall chain
        (``names.HOOK_CHAINS``) exists afterwards, the jump to it is made
        rule 1 of the hook (moved there if it sits elsewhere, never doubled),
        and removed when the chain goes.  Chains not named are left untouched.
        ``assume_jump`` says the caller knows the hook jumps exist (a record
        of this family was there): a backend
        may then skip reading the table first if it checks the kernel agrees
        and reaches the same outcome when it does.
        ``existing``: the podwall chains the caller knows exist now (the
        agent's memory of what it wrote, or a read it just made under the
        podwall lock); a backend may then read only the hooks instead of the
        whole table.  ``None``: the backend finds out itself.  When the
        kernel disagrees the transaction may be refused (nothing changed);
        the caller should then re-read and retry.
        ``current``: what the caller read with ``read_chains`` under the
        podwall lock, naming at least every chain of ``delete``; the backend
        then reads nothing more.  A chain of ``replace`` that it lacks is
        declared afresh (created, or flushed and refilled: the same outcome).
        Raises BackendError; TryAgainError when a retry may succeed.
        """
        ...

    def remove_all(self, family: model.Family) -> None:
        """Remove the hook jumps and every podwall chain of ``family``."""
        ...
