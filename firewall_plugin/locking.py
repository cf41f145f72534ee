"""The locks every podwall writer takes.

``podwall_lock(run_dir)`` serialises all podwall writers of a node (every
plugin process and the agent) on a flock of ``<runDir>/podwall.lock``.
``xtables_lock()`` takes ``/run/xtables.lock`` like the iptables binaries do;
the ``iptc`` backend holds it from refresh to commit because libiptc does not.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time

from firewall_plugin.errors import TryAgainError

TYPE_CHECKING = False  # typing costs the CNI start-up ~4 ms (see values.py)
if TYPE_CHECKING:
    from types import TracebackType

XTABLES_LOCK = "/run/xtables.lock"
LOCK_NAME = "podwall.lock"


class FileLock:
    """An exclusive flock on ``path`` (created if missing), held inside ``with``.

    A class rather than a ``contextlib`` generator: the CNI plugin takes this
    lock at every start and ``contextlib`` costs ~1 ms to import.
    """

    def __init__(self, path: str, *, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self._fd = -1

    def __enter__(self) -> None:
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            self._wait()
        except BaseException:
            self._release()
            raise

    def _wait(self) -> None:
        deadline = time.monotonic() + self.timeout
        delay = 0.001
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    raise TryAgainError(
                        f"lock {self.path} held by another writer for {self.timeout}s"
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.05)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._release()

    def _release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def flock(path: str, *, timeout: float) -> FileLock:
    """Hold an exclusive flock on ``path`` (created if missing) in a ``with``.

    Raises TryAgainError when the lock is not had within ``timeout`` seconds.
    """
    return FileLock(path, timeout=timeout)


def podwall_lock(run_dir: str, *, timeout: float = 30.0) -> FileLock:
    """The node-wide lock of all podwall writers."""
    return flock(os.path.join(run_dir, LOCK_NAME), timeout=timeout)


def xtables_lock(*, timeout: float = 30.0) -> FileLock:
    """The lock the iptables binaries take (libiptc does not)."""
    return flock(XTABLES_LOCK, timeout=timeout)
