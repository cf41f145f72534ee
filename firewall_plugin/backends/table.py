"""``KernelTable``: what a backend reads back from one family's filter table.

Kept apart from ``backends.base`` (whose ``Backend`` is a ``typing.Protocol``)
so that the CNI plugin's start-up never imports ``typing``.

Pure: no I/O.
"""

from __future__ import annotations


class KernelTable:
    """What one family's filter table holds that matters to podwall.

    ``chains`` maps every podwall-owned chain to its rules as iptables-save
    specs (the text after ``-A CHAIN ``), in order; ``forward`` lists every
    rule of ``FORWARD`` (not only podwall's) the same way.  Mutable, compared
    by value (hence unhashable).
    """

    __slots__ = ("chains", "forward")

    def __init__(
        self,
        chains: dict[str, list[str]] | None = None,
        forward: list[str] | None = None,
    ) -> None:
        self.chains: dict[str, list[str]] = {} if chains is None else chains
        self.forward: list[str] = [] if forward is None else forward

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, KernelTable)
        return (self.chains, self.forward) == (other.chains, other.forward)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"KernelTable(chains={self.chains!r}, forward={self.forward!r})"
