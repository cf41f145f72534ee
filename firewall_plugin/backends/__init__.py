"""Backends: the one protocol every kernel writer implements, and the chooser.

``get_backend(name)`` returns a backend for ``iptables-nft``,
``iptables-legacy``, ``iptc`` or ``auto`` (detect what the node uses, like
kube-proxy's iptables wrapper: the variant with more rules, preferring the one
holding ``KUBE-`` chains; nft when nothing is there yet).  Backend modules are
imported only when chosen (``iptc`` costs tens of milliseconds to load).
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


BACKEND_NAMES = ("auto", "iptables-nft", "iptables-legacy", "iptc")

__all__ = ["BACKEND_NAMES", "Backend", "KernelTable", "detect", "get_backend"]


def detect() -> str:
    """Name of the iptables variant this node already uses."""
    from firewall_plugin.backends.restore import detect_variant

    return detect_variant()


def get_backend(name: str) -> Backend:
    """The backend called ``name``; ``auto`` resolves by detection."""
    if name == "auto":
        name = detect()
    if name in ("iptables-nft", "iptables-legacy"):
        from firewall_plugin.backends.restore import RestoreBackend

        return RestoreBackend(variant=name.removeprefix("iptables-"))
    if name == "iptc":
        from firewall_plugin.backends.iptc_backend import IptcBackend

        return IptcBackend()
    raise ConfigError(f"unknown backend {name!r}; expected one of {', '.join(BACKEND_NAMES)}")
