"""Run a program to completion with text on stdin and its output captured.

The plugin's stand-in for ``subprocess.run(..., capture_output=True,
text=True)``: importing ``subprocess`` (with ``selectors``, ``signal``,
``locale``, ``threading``) costs the CNI plugin ~4 ms of its start-up, and it
only ever runs iptables tools to completion.  The child's stdin, stdout and
stderr are memory files (``memfd_create``), so neither side can block on a
full pipe however large the input or output, and no reader thread or poll
loop is needed: the output is read back after the child exits.

Linux only.  Raises OSError when the program cannot be started; a program
that is not on PATH raises FileNotFoundError whose ``strerror`` says what to
do (the iptables backends run the host's tools; ``MISSING_HINT``).
"""

from __future__ import annotations

import os

from firewall_plugin.values import Frozen, init_fields

TYPE_CHECKING = False  # typing costs the CNI start-up ~4 ms (see values.py)
if TYPE_CHECKING:
    from collections.abc import Sequence


class Completed(Frozen):
    """How a program ended: its exit status (negative: killed by that signal)
    and what it wrote, decoded as UTF-8."""

    __slots__ = ("returncode", "stderr", "stdout")
    returncode: int
    stdout: str
    stderr: str

    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        init_fields(self, returncode, stdout, stderr)


def _memory_file(name: str, data: bytes = b"") -> int:
    fd = os.memfd_create(name)  # close-on-exec; the child gets dup2'd copies
    if data:
        os.write(fd, data)
        os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _read_all(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    with open(fd, "rb", closefd=False) as handle:
        return handle.read().decode()


MISSING_HINT = (
    "the iptables backends run the node's own iptables and ipset tools: install them "
    "on the node (Debian/Ubuntu: apt-get install iptables ipset) or use backend nftables"
)


def run(argv: Sequence[str], text: str = "") -> Completed:
    """Run ``argv`` (``argv[0]`` looked up on PATH) with ``text`` on stdin."""
    fds = [
        _memory_file("podwall-stdin", text.encode()),
        _memory_file("podwall-stdout"),
        _memory_file("podwall-stderr"),
    ]
    try:
        actions = [(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(fds)]
        try:
            pid = os.posix_spawnp(argv[0], list(argv), os.environ, file_actions=actions)
        except FileNotFoundError as exc:
            path = os.environ.get("PATH", "")
            exc.strerror = f"not found on PATH ({path}); {MISSING_HINT}"
            raise
        _, status = os.waitpid(pid, 0)
        return Completed(os.waitstatus_to_exitcode(status), _read_all(fds[1]), _read_all(fds[2]))
    finally:
        for fd in fds:
            os.close(fd)
