"""The locks every podwall writer takes.

``podwall_lock(run_dir)`` serialises all podwall writers of a node (every
plugin process and the agent) on a flock of ``<runDir>/podwall.lock``.
``xtables_lock()`` takes ``/run/xtables.lock`` like the iptables binaries do;
the ``iptc`` backend holds it from refresh to commit because libiptc does not.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Iterator

from firewall_plugin.errors import TryAgainError

XTABLES_LOCK = "/run/xtables.lock"
LOCK_NAME = "podwall.lock"


@contextlib.contextmanager
def flock(path: str, *, timeout: float) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (created if missing).

    Raises TryAgainError when the lock is not had within ``timeout`` seconds.
    """
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + timeout
        delay = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    raise TryAgainError(
                        f"lock {path} held by another writer for {timeout}s"
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
        yield
    finally:
        os.close(fd)


def podwall_lock(run_dir: str, *, timeout: float = 30.0) -> contextlib.AbstractContextManager[None]:
    """The node-wide lock of all podwall writers."""
    return flock(os.path.join(run_dir, LOCK_NAME), timeout=timeout)


def xtables_lock(*, timeout: float = 30.0) -> contextlib.AbstractContextManager[None]:
    """The lock the iptables binaries take (libiptc does not)."""
    return flock(XTABLES_LOCK, timeout=timeout)
