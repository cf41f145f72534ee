"""The glibc floor of a set of ELF files, and the glibc a host provides.

``floor(paths)`` is the highest ``GLIBC_x.y`` symbol version that any of the
files needs (``.gnu.version_r``): the oldest glibc the loader can start them
with.  ``host_glibc(root)`` finds the host's ``libc.so.6`` under ``root`` (the
host's file system as this process sees it: ``/`` on the host itself, a
read-only mount of the host's ``/usr`` and ``/lib`` in the DaemonSet) and
returns the highest version it defines (``.gnu.version_d``), which is the
glibc release.  ``check_host`` compares the two and raises ``HostError`` with
a message an operator can act on.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from firewall_install import elf
from firewall_install.errors import HostError

#: where distributions keep libc.so.6 (merged /usr or not; Debian multiarch, RHEL lib64)
LIBC_DIRS = (
    "usr/lib/x86_64-linux-gnu",
    "usr/lib/aarch64-linux-gnu",
    "usr/lib64",
    "usr/lib",
    "lib/x86_64-linux-gnu",
    "lib/aarch64-linux-gnu",
    "lib64",
    "lib",
)
LIBC = "libc.so.6"

Version = tuple[int, ...]


def elf_files(paths: Iterable[str]) -> Iterator[tuple[str, elf.ElfInfo]]:
    """Every ELF file among ``paths`` (folders are walked; symlinks are not followed)."""
    for path in paths:
        if os.path.isdir(path) and not os.path.islink(path):
            for folder, dirs, names in os.walk(path):
                dirs.sort()
                for name in sorted(names):
                    yield from _one(os.path.join(folder, name))
        else:
            yield from _one(path)


def _one(path: str) -> Iterator[tuple[str, elf.ElfInfo]]:
    if os.path.islink(path) or not os.path.isfile(path):
        return
    info = elf.read(path)
    if info is not None:
        yield path, info


def floor(paths: Iterable[str]) -> tuple[Version | None, list[tuple[str, Version]]]:
    """(highest GLIBC version needed, each ELF file with its own need), files sorted."""
    needs = [(path, info.glibc_needed()) for path, info in elf_files(paths)]
    found = [(path, need) for path, need in needs if need is not None]
    return (max(need for _, need in found) if found else None), found


def find_libc(root: str) -> str | None:
    """The host's ``libc.so.6`` under ``root``; symlinks are resolved inside ``root``."""
    for folder in LIBC_DIRS:
        path = _inside(root, os.path.join(folder, LIBC))
        if path is not None and os.path.isfile(path):
            return path
    return None


def _inside(root: str, relative: str, depth: int = 0) -> str | None:
    """``root/relative`` with symlinks resolved as the host would (absolute ones under root)."""
    path = os.path.join(root, relative)
    if depth > 16 or not os.path.lexists(path):
        return None
    if not os.path.islink(path):
        return path
    target = os.readlink(path)
    if os.path.isabs(target):
        return _inside(root, target.lstrip("/"), depth + 1)
    return _inside(
        root, os.path.normpath(os.path.join(os.path.dirname(relative), target)), depth + 1
    )


def host_glibc(root: str) -> tuple[Version, str] | None:
    """(glibc version of the host under ``root``, the libc file), or None without glibc."""
    libc = find_libc(root)
    if libc is None:
        return None
    info = elf.read(libc)
    versions = [elf.glibc_version(name) for name in (info.versions_defined if info else ())]
    found = [v for v in versions if v is not None]
    return (max(found), libc) if found else None


def check_host(root: str, needed: Version | None) -> str:
    """Raise ``HostError`` unless the host under ``root`` has glibc >= ``needed``; else say so."""
    if needed is None:
        return "the bundle needs no glibc symbol versions"
    want = elf.format_version(needed)
    host = host_glibc(root)
    if host is None:
        looked = ", ".join(os.path.join(root, d) for d in LIBC_DIRS[:4])
        raise HostError(
            f"no glibc found on the host (looked for {LIBC} in {looked} and the /lib "
            f"equivalents): the podwall bundle needs glibc >= {want}; musl-based or "
            "glibc-less node OSes cannot run it (see deploy/README.md, 'What the host needs')"
        )
    version, libc = host
    have = elf.format_version(version)
    if version < needed:
        raise HostError(
            f"the host's glibc is {have} ({libc}) and the podwall bundle needs >= {want}: "
            "use an image built on an older base (deploy/README.md, 'What the host needs'), "
            "or upgrade the node OS"
        )
    return f"host glibc {have} >= {want} needed by the bundle"
