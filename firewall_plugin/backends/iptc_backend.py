"""python-iptables backend (legacy tables only).  Placeholder: being written."""

from __future__ import annotations

from collections.abc import Sequence

from firewall_plugin import model
from firewall_plugin.backends.base import KernelTable
from firewall_plugin.errors import BackendError


class IptcBackend:
    name = "iptc"

    def read(self, family: model.Family) -> KernelTable:
        raise BackendError("iptc backend not implemented yet")

    def apply(
        self, family: model.Family, *, replace: Sequence[model.Chain], delete: Sequence[str] = ()
    ) -> None:
        raise BackendError("iptc backend not implemented yet")

    def remove_all(self, family: model.Family) -> None:
        raise BackendError("iptc backend not implemented yet")
