"""Run the test process's own thread inside a network namespace, and back.

``with entered(name):`` moves the calling thread into netns ``name`` (so the
iptables/ipset processes it starts act there) and always returns it to the
namespace it came from.  Kept for tests whose objects (an Applier and its
memory) must live across many kernel calls in one namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator

from firewall_lab import netns


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, netns.CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns failed")


@contextlib.contextmanager
def entered(name: str) -> Iterator[None]:
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        netns.enter(name)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)
