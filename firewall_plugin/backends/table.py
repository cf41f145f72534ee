"""``KernelTable``: what a backend reads back from one family's filter table.

Kept apart from ``backends.base`` (whose ``Backend`` is a ``typing.Protocol``)
so that the CNI plugin's start-up never imports ``typing``.

Pure: no I/O.
"""

from __future__ import annotations

#: the built-in chains podwall jumps from (``names.HOOK_CHAINS``'s keys)
HOOKS = ("FORWARD", "INPUT")


class KernelTable:
    """What one family's filter table holds that matters to podwall.

    ``chains`` maps every podwall-owned chain to its rules as iptables-save
    specs (the text after ``-A CHAIN ``), in order; ``hooks`` maps each
    built-in chain podwall jumps from (``FORWARD``, ``INPUT``) to every one
    of its rules (not only podwall's) the same way.  Mutable, compared by
    value (hence unhashable).
    """

    __slots__ = ("chains", "hooks")

    def __init__(
        self,
        chains: dict[str, list[str]] | None = None,
        hooks: dict[str, list[str]] | None = None,
    ) -> None:
        self.chains: dict[str, list[str]] = {} if chains is None else chains
        self.hooks: dict[str, list[str]] = {} if hooks is None else hooks
        for hook in HOOKS:
            self.hooks.setdefault(hook, [])

    @property
    def forward(self) -> list[str]:
        """The rules of FORWARD."""
        return self.hooks["FORWARD"]

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, KernelTable)
        return (self.chains, self.hooks) == (other.chains, other.hooks)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"KernelTable(chains={self.chains!r}, hooks={self.hooks!r})"
