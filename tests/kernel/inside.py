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
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from firewall_lab import netns

T = TypeVar("T")


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


def in_netns(name: str, fn: Callable[[], T], *, timeout: float = 60) -> T:
    """``fn()`` on a fresh thread inside netns ``name`` (sockets it opens stay
    there); its exception is raised here."""
    box: dict[str, Any] = {}

    def body() -> None:
        netns.enter(name)
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=body)
    thread.start()
    thread.join(timeout)
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]
