"""Backends: which data plane writes the kernel, and the chooser.

``nftables`` is podwall's own tables written over netlink
(``firewall_plugin.nft``); the iptables backends implement one protocol
(``Backend``): ``iptables-nft``, ``iptables-legacy`` and ``iptc``
(python-iptables), returned by ``get_backend(name)``.  ``detect()`` is what
``auto`` resolves to: ``nftables`` where the kernel runs it (nf_tables with
the inet and bridge families, answering over netlink), else the iptables
variant the node already uses, like kube-proxy's iptables wrapper (the one
with more rules, preferring the one holding ``KUBE-`` chains).  Backend
modules are imported only when chosen (``iptc`` costs tens of milliseconds).
"""

from __future__ import annotations

from firewall_plugin.backends.table import KernelTable
from firewall_plugin.errors import ConfigError

TYPE_CHECKING = False  # typing costs the CNI start-up ~4 ms (see values.py)
if TYPE_CHECKING:
    from firewall_plugin.backends.base import Backend
else:

    def __getattr__(name: str) -> object:
        """``Backend`` (a ``typing.Protocol``), imported on first use."""
        if name != "Backend":
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        from firewall_plugin.backends.base import Backend

        return Backend


NFTABLES = "nftables"
CONCRETE_NAMES = (NFTABLES, "iptables-nft", "iptables-legacy", "iptc")
BACKEND_NAMES = ("auto", *CONCRETE_NAMES)

__all__ = [
    "BACKEND_NAMES",
    "CONCRETE_NAMES",
    "NFTABLES",
    "Backend",
    "KernelTable",
    "detect",
    "get_backend",
]


def detect() -> str:
    """``nftables`` when this kernel runs it, else the iptables variant this
    node already uses."""
    from firewall_plugin.nft import ops

    if not ops.ready():
        return NFTABLES
    from firewall_plugin.backends.restore import detect_variant

    return detect_variant()


def get_backend(name: str) -> Backend:
    """The iptables backend called ``name``; ``auto`` resolves by detection
    (ConfigError when that is ``nftables``, which is not an iptables backend)."""
    if name == "auto":
        name = detect()
    if name in ("iptables-nft", "iptables-legacy"):
        from firewall_plugin.backends.restore import RestoreBackend

        return RestoreBackend(variant=name.removeprefix("iptables-"))
    if name == "iptc":
        from firewall_plugin.backends.iptc_backend import IptcBackend

        return IptcBackend()
    if name == NFTABLES:
        raise ConfigError("nftables is written by firewall_plugin.nft, not by an iptables backend")
    raise ConfigError(f"unknown backend {name!r}; expected one of {', '.join(BACKEND_NAMES)}")
