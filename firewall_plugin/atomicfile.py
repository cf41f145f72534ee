"""Replace files so that readers only ever see the old or the new whole file.

``atomic_write`` writes a temp file in the target's folder and renames it over
the target.  The temp name is ``.podwall-XXXX.tmp``: it has no CNI extension,
so a container runtime listing ``*.conf``/``*.conflist``/``*.json`` never picks
it up (a ``.x.conflist`` would even sort first).  ``Snapshot`` remembers a file
as read, so a rewrite can be refused when someone else changed the file since.

Files only; raises OSError and ``ConcurrentChange``, maps nothing itself.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass

Identity = tuple[int, int, int, int]  # inode, size, mtime_ns, mode


class ConcurrentChange(Exception):
    """The file was rewritten by someone else between read and rename."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A file as read: its text and identity, to detect concurrent rewrites."""

    path: str
    text: str
    identity: Identity

    @property
    def mode(self) -> int:
        return self.identity[3] & 0o7777

    def changed(self) -> bool:
        """True when ``path`` no longer is the file that was read."""
        try:
            return identity_of(self.path) != self.identity
        except FileNotFoundError:
            return True


def identity_of(path: str) -> Identity:
    st = os.stat(path)
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_mode)


def read_snapshot(path: str) -> Snapshot:
    """Read ``path`` (UTF-8); FileNotFoundError and other OSErrors pass through."""
    with open(path, encoding="utf-8") as handle:
        identity = os.fstat(handle.fileno())
        text = handle.read()
    ident = (identity.st_ino, identity.st_size, identity.st_mtime_ns, identity.st_mode)
    return Snapshot(path=path, text=text, identity=ident)


def atomic_write(path: str, text: str, *, mode: int, expect: Snapshot | None = None) -> None:
    """Replace ``path`` by renaming a fully written, fsynced temp file over it.

    With ``expect``, the rename happens only while ``expect.path`` still is the
    file that was read; otherwise ``ConcurrentChange`` and nothing changes.
    """
    directory = os.path.dirname(path) or "."
    fd, temp = tempfile.mkstemp(dir=directory, prefix=".podwall-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        if expect is not None and expect.changed():
            raise ConcurrentChange(f"{expect.path} changed while podwall was editing it")
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    sync_dir(directory)


def sync_dir(directory: str) -> None:
    """fsync a folder so renames and unlinks in it survive a crash (best effort)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
