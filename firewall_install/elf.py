"""Read what an ELF file links against: its DT_NEEDED libraries, the symbol
versions it needs from them (``.gnu.version_r``), and the versions a library
defines (``.gnu.version_d``).  This is what the dynamic loader checks when it
starts a program: a needed ``GLIBC_2.34`` that the host's ``libc.so.6`` does
not define stops the program before ``main``.

Pure parsing with ``struct`` over the file's bytes (32- and 64-bit, either byte
order); no ``readelf``/``objdump`` needed, so it runs in the image.  Files that
are not ELF give ``None``; a truncated or corrupt ELF raises ``ElfError``.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

MAGIC = b"\x7fELF"
PT_INTERP = 3
SHT_DYNAMIC = 6
SHT_GNU_VERDEF = 0x6FFFFFFD
SHT_GNU_VERNEED = 0x6FFFFFFE
DT_NEEDED = 1
GLIBC_VERSION = re.compile(r"GLIBC_(\d+)\.(\d+)(?:\.(\d+))?$")


class ElfError(ValueError):
    """The file starts like an ELF file but cannot be parsed."""


@dataclass(frozen=True, slots=True)
class ElfInfo:
    """What one ELF file links: libraries, and versions needed or defined."""

    needed: tuple[str, ...] = ()
    #: library file name → version names needed from it
    versions_needed: dict[str, tuple[str, ...]] = field(default_factory=dict)
    versions_defined: tuple[str, ...] = ()
    debug_info: bool = False  # has .debug_* sections (not stripped)
    interpreter: str = ""  # PT_INTERP: the loader a program asks for ("" for libraries)

    def glibc_needed(self) -> tuple[int, ...] | None:
        """The highest ``GLIBC_x.y`` this file needs from any library, or None."""
        found = [glibc_version(v) for names in self.versions_needed.values() for v in names]
        versions = [v for v in found if v is not None]
        return max(versions) if versions else None


def glibc_version(name: str) -> tuple[int, ...] | None:
    """``GLIBC_2.34`` → ``(2, 34)``; other version names → None."""
    match = GLIBC_VERSION.match(name)
    if match is None:
        return None
    return tuple(int(part) for part in match.groups() if part is not None)


def format_version(version: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in version)


def read(path: str) -> ElfInfo | None:
    """Parse ``path``; None when it is not an ELF file."""
    with open(path, "rb") as handle:
        data = handle.read()
    if not data.startswith(MAGIC):
        return None
    try:
        return _parse(data)
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise ElfError(f"{path}: corrupt ELF file ({exc})") from exc


@dataclass(frozen=True, slots=True)
class _Section:
    name: int
    kind: int
    offset: int
    size: int
    link: int
    entsize: int


def _parse(data: bytes) -> ElfInfo:
    wide = data[4] == 2
    order = "<" if data[5] == 1 else ">"
    interpreter = _interpreter(data, order, wide)
    if wide:
        shoff = _unpack(order + "Q", data, 0x28)[0]
        shentsize, shnum, shstrndx = _unpack(order + "HHH", data, 0x3A)
    else:
        shoff = _unpack(order + "I", data, 0x20)[0]
        shentsize, shnum, shstrndx = _unpack(order + "HHH", data, 0x2E)
    header = order + ("IIQQQQIIQQ" if wide else "IIIIIIIIII")
    sections = []
    for index in range(shnum):
        fields = _unpack(header, data, shoff + index * shentsize)
        sections.append(_Section(fields[0], fields[1], fields[4], fields[5], fields[6], fields[9]))
    needed: list[str] = []
    wanted: dict[str, tuple[str, ...]] = {}
    defined: list[str] = []
    for section in sections:
        if section.kind == SHT_DYNAMIC:
            needed = _needed(data, order, wide, section, sections[section.link])
        elif section.kind == SHT_GNU_VERNEED:
            wanted = _verneed(data, order, section, sections[section.link])
        elif section.kind == SHT_GNU_VERDEF:
            defined = _verdef(data, order, section, sections[section.link])
    names = sections[shstrndx] if 0 < shstrndx < len(sections) else None
    debug = names is not None and any(
        _string(data, names, s.name).startswith(".debug_") for s in sections[1:]
    )
    return ElfInfo(tuple(needed), wanted, tuple(defined), debug, interpreter)


def _interpreter(data: bytes, order: str, wide: bool) -> str:
    """The PT_INTERP path (p_offset at +8/+4, p_filesz at +32/+16 in a program header)."""
    word = order + ("Q" if wide else "I")
    if wide:
        phoff = _unpack(word, data, 0x20)[0]
        phentsize, phnum = _unpack(order + "HH", data, 0x36)
    else:
        phoff = _unpack(word, data, 0x1C)[0]
        phentsize, phnum = _unpack(order + "HH", data, 0x2A)
    offset_at, size_at = (8, 32) if wide else (4, 16)
    for index in range(phnum):
        entry = phoff + index * phentsize
        if _unpack(order + "I", data, entry)[0] == PT_INTERP:
            offset = _unpack(word, data, entry + offset_at)[0]
            size = _unpack(word, data, entry + size_at)[0]
            return data[offset : offset + size].rstrip(b"\0").decode("ascii")
    return ""


def _unpack(fmt: str, data: bytes, offset: int) -> tuple[int, ...]:
    return struct.unpack_from(fmt, data, offset)


def _string(data: bytes, strtab: _Section, offset: int) -> str:
    start = strtab.offset + offset
    return data[start : data.index(b"\0", start)].decode("ascii")


def _needed(data: bytes, order: str, wide: bool, dynamic: _Section, strtab: _Section) -> list[str]:
    fmt, size = (order + "qQ", 16) if wide else (order + "iI", 8)
    found = []
    for offset in range(dynamic.offset, dynamic.offset + dynamic.size, size):
        tag, value = _unpack(fmt, data, offset)
        if tag == 0:
            break
        if tag == DT_NEEDED:
            found.append(_string(data, strtab, value))
    return found


def _verneed(
    data: bytes, order: str, section: _Section, strtab: _Section
) -> dict[str, tuple[str, ...]]:
    found: dict[str, tuple[str, ...]] = {}
    offset = section.offset
    while True:
        _version, count, file_name, aux, next_entry = _unpack(order + "HHIII", data, offset)
        names, at = [], offset + aux
        for _ in range(count):
            _hash, _flags, _other, name, next_aux = _unpack(order + "IHHII", data, at)
            names.append(_string(data, strtab, name))
            at += next_aux
        found[_string(data, strtab, file_name)] = tuple(names)
        if next_entry == 0:
            return found
        offset += next_entry


def _verdef(data: bytes, order: str, section: _Section, strtab: _Section) -> list[str]:
    found = []
    offset = section.offset
    while True:
        _version, _flags, _index, count, _hash, aux, next_entry = _unpack(
            order + "HHHHIII", data, offset
        )
        if count:
            name = _unpack(order + "I", data, offset + aux)[0]
            found.append(_string(data, strtab, name))
        if next_entry == 0:
            return found
        offset += next_entry
