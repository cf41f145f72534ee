"""Read what the pod's own network namespace says about its interface.

``link_local(netns, ifname)``: the IPv6 link-local address the pod sends
neighbour discovery and link-local traffic from.  It is read, not derived
from the MAC address, because the kernel may generate it otherwise
(``addr_gen_mode`` stable-privacy or random).  The read happens in a
short-lived thread that enters the namespace (``setns`` changes only the
calling thread), through ``/proc/thread-self/net/if_inet6``.  ADD asks
the node's rtnetlink about the veth's peer first
(``links.peer_link_local``: no thread, no ctypes) and comes here only
when that cannot answer.

Reads only; changes nothing in any namespace.
"""

from __future__ import annotations

import _thread
import os

CLONE_NEWNET = 0x40000000
SCOPE_LINK = "20"


def _setns(fd: int) -> None:
    setns = getattr(os, "setns", None)  # Python 3.12+
    if setns is not None:
        setns(fd, CLONE_NEWNET)
        return
    import ctypes  # 3.11: only on this (IPv6) path

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def parse_if_inet6(text: str, ifname: str) -> str:
    """The first link-scope address of ``ifname`` in ``if_inet6`` text."""
    for line in text.splitlines():
        words = line.split()
        if len(words) == 6 and words[5] == ifname and words[3] == SCOPE_LINK:
            from firewall_plugin import addresses

            return addresses.text(bytes.fromhex(words[0]))
    return ""


def link_local(netns: str, ifname: str) -> str:
    """``ifname``'s IPv6 link-local address inside the namespace at path
    ``netns`` ('' when it has none); OSError when the namespace cannot be
    entered or read."""
    outcome: list[object] = []
    done = _thread.allocate_lock()
    done.acquire()

    def work() -> None:
        try:
            fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(fd)
            finally:
                os.close(fd)
            with open("/proc/thread-self/net/if_inet6") as handle:
                outcome.append(parse_if_inet6(handle.read(), ifname))
        except FileNotFoundError:
            outcome.append("")  # no IPv6 in that namespace
        except OSError as exc:
            outcome.append(exc)
        finally:
            done.release()

    _thread.start_new_thread(work, ())
    done.acquire()
    found = outcome[0]
    if isinstance(found, OSError):
        raise found
    return str(found)
