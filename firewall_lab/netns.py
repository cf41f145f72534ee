"""Named network namespaces: create, delete, run commands and code inside.

A named netns must be created from the root mount namespace (``ip netns add``
inside ``ip netns exec`` makes a mount that dies with that command).  Code runs
in a namespace either as a command (``run``) or as a forked child that enters
it (``call``), so the calling process never leaves its own namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import subprocess
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
T = TypeVar("T")


class NetnsError(Exception):
    """A namespace could not be created, entered or removed."""


def path(name: str) -> str:
    """The bind-mount path of a named namespace."""
    return os.path.join(NETNS_DIR, name)


def exists(name: str) -> bool:
    return os.path.exists(path(name))


def unique_name(prefix: str) -> str:
    """``<prefix>-<8 hex>``: short enough for interface names derived from it."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create(name: str, *, sysctls: Mapping[str, str] | None = None) -> str:
    """Create netns ``name`` with ``lo`` up; apply ``sysctls`` inside it."""
    _ip(["netns", "add", name])
    try:
        run(name, ["ip", "link", "set", "lo", "up"])
        for key, value in (sysctls or {}).items():
            run(name, ["sysctl", "-q", "-w", f"{key}={value}"])
    except Exception:
        delete(name)
        raise
    return name


def delete(name: str) -> None:
    """Remove netns ``name`` (its links, rules, sets and conntrack go with it).

    Kills processes still running inside it first; a missing name is fine.
    """
    if not exists(name):
        return
    pids = subprocess.run(
        ["ip", "netns", "pids", name], capture_output=True, text=True, check=False
    ).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), 9)
    _ip(["netns", "del", name])


def run(
    name: str,
    argv: Sequence[str],
    *,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float | None = 60,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` inside netns ``name`` and capture its output."""
    done = subprocess.run(
        ["ip", "netns", "exec", name, *argv],
        input=input,
        capture_output=True,
        text=True,
        env=dict(env) if env is not None else None,
        check=False,
        timeout=timeout,
    )
    if check and done.returncode != 0:
        raise NetnsError(
            f"{' '.join(argv)} in {name} failed (exit {done.returncode}): "
            f"{done.stderr.strip() or done.stdout.strip()}"
        )
    return done


def enter(name: str) -> None:
    """Move the calling process (or thread) into netns ``name``. Use in a child."""
    fd = os.open(path(name), os.O_RDONLY | os.O_CLOEXEC)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise NetnsError(f"cannot enter netns {name}: {os.strerror(err)}")
    finally:
        os.close(fd)


def _child(name: str, fn: Callable[..., Any], args: tuple[Any, ...], queue: Any) -> None:
    try:
        enter(name)
        queue.put((True, fn(*args)))
    except BaseException as exc:
        queue.put((False, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))


def call(name: str, fn: Callable[..., T], *args: Any, timeout: float = 120) -> T:
    """Run ``fn(*args)`` in a forked child inside netns ``name``; return its
    (picklable) result or raise NetnsError with the child's traceback."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child, args=(name, fn, args, queue))
    child.start()
    try:
        ok, value = queue.get(timeout=timeout)
    finally:
        child.join(timeout=5)
        if child.is_alive():
            child.kill()
    if not ok:
        raise NetnsError(f"call in {name} failed: {value}")
    return value  # type: ignore[no-any-return]


def _ip(args: list[str]) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
