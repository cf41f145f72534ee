"""The host bundle: this interpreter and exactly the modules the CNI path loads.

``<bin-dir>/podwall.d/<id>/`` holds

* ``python/bin/python3.X`` and, for a shared build, the one ``libpython``
  file the interpreter loaded (copied once, by its soname);
* ``python/lib/python3.X/``: the standard-library modules of the closure
  (``firewall_install.modules``), compiled to sourceless ``.pyc`` files, and
  the extension modules among them in ``lib-dynload/``;
* ``site/firewall_plugin/``: the package modules of the closure, as ``.pyc``;
* ``launch.py`` (the entry the launcher runs), ``manifest.json`` (id, Python
  version, glibc floor, what was left out and why) and ``complete``.

Sourceless ``.pyc`` files: nothing is compiled or written on the host at run
time, and the file count halves.  They are compiled by the running
interpreter, which is the one bundled, so the magic number always matches.

Extension modules that link anything beyond glibc (``_hashlib`` links
libcrypto) are left out: the host is assumed to have glibc and a kernel, no
more.  The standard library imports them inside ``try`` (``hashlib`` falls
back to its built-in hashes); a module that truly needs one fails the tests
that run every verb through a bundle.

The id is a digest of the bundled files' contents (and of ``LAYOUT``), so the
same code gives the same id and two different builds never share one.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import py_compile
import shutil
import sys
from dataclasses import dataclass

import firewall_plugin
from firewall_install import elf, glibc, modules
from firewall_install.errors import InstallError

LAYOUT = "3: sourceless closure, in-use lock"
#: libraries a bundled ELF file may link: glibc's own (the host provides them)
GLIBC_LIBS = (
    "libc.so.6",
    "libm.so.6",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
    "libutil.so.1",
    "ld-linux-x86-64.so.2",
    "ld-linux-aarch64.so.1",
)
#: held shared by every plugin run of a bundle (``launch.py``); the pruner tests it
IN_USE = "complete"


@dataclass(frozen=True, slots=True)
class Plan:
    """What goes into a bundle: (destination relative to its home, source) pairs."""

    ident: str
    version: str  # "3.11"
    files: tuple[tuple[str, str], ...]
    left_out: tuple[str, ...]  # "<module>: <why>"

    @property
    def shared(self) -> bool:
        return any(dest.startswith("python/lib/libpython") for dest, _ in self.files)


def package_root() -> str:
    """The folder that holds the ``firewall_plugin`` package."""
    return os.path.dirname(os.path.dirname(os.path.abspath(firewall_plugin.__file__)))


@functools.cache
def plan(root: str | None = None) -> Plan:
    """The bundle of the running interpreter and the ``firewall_plugin`` under
    ``root`` (default: the imported one); computed once per root."""
    root = root or package_root()
    closure = modules.closure(sys.executable, root)
    stdlib = os.path.join("python", "lib", f"python{closure.version}")
    files = [(f"python/bin/python{closure.version}", os.path.realpath(closure.executable))]
    if closure.libpython:
        files.append((f"python/lib/{os.path.basename(closure.libpython)}", closure.libpython))
    left_out = [f"{name}: {why}" for name, why in sorted(modules.LEFT_OUT.items())]
    for name, source in sorted(closure.files.items()):
        dest = _destination(name, source, root=root, stdlib=closure.stdlib, prefix=stdlib)
        if dest is None:
            continue
        why = _foreign_libraries(source)
        if why:
            left_out.append(f"{name}: {why}")
            continue
        files.append((dest, source))
    files.sort()
    return Plan(ident=_ident(files, closure.version), version=closure.version,
                files=tuple(files), left_out=tuple(left_out))  # fmt: skip


def _destination(name: str, source: str, *, root: str, stdlib: str, prefix: str) -> str | None:
    if name == "__main__":
        return None
    if source.startswith(os.path.join(root, modules.PACKAGE) + os.sep):
        relative, base = os.path.relpath(source, root), "site"
    else:
        relative, base = os.path.relpath(source, stdlib), prefix
    if relative.endswith(".py"):
        relative += "c"
    return os.path.join(base, relative)


def _foreign_libraries(path: str) -> str:
    """Why an extension module cannot go to a glibc-only host ("" when it can)."""
    if not path.endswith(".so"):
        return ""
    info = elf.read(path)
    foreign = [lib for lib in (info.needed if info else ()) if not is_glibc_or_python(lib)]
    return f"links {', '.join(foreign)}" if foreign else ""


def is_glibc_or_python(lib: str) -> bool:
    return lib in GLIBC_LIBS or lib.startswith("libpython")


def _ident(files: list[tuple[str, str]], version: str) -> str:
    digest = hashlib.sha256(f"{version}\n{LAYOUT}\n".encode())
    for dest, source in files:
        with open(source, "rb") as handle:
            digest.update(f"{dest}\0{hashlib.sha256(handle.read()).hexdigest()}\n".encode())
    return "b-" + digest.hexdigest()[:16]


@functools.cache
def needed_glibc(bundle: Plan) -> tuple[int, ...] | None:
    """The highest GLIBC version any ELF file of the bundle needs (read once)."""
    return glibc.floor(source for dest, source in bundle.files if not dest.endswith(".pyc"))[0]


def write(home: str, bundle: Plan) -> None:
    """Write ``bundle`` to ``home`` (staged next to it, then renamed into place)."""
    staging = f"{home}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for dest, source in bundle.files:
            target = os.path.join(staging, dest)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if dest.endswith(".pyc"):
                py_compile.compile(source, cfile=target, dfile=dest[:-1], doraise=True)
            else:
                shutil.copy2(source, target)
        dynload = os.path.join(staging, "python", "lib", f"python{bundle.version}", "lib-dynload")
        os.makedirs(dynload, exist_ok=True)  # the landmark Python looks for at start-up
        _write_text(os.path.join(staging, "launch.py"), launch_script())
        _write_text(os.path.join(staging, "manifest.json"), manifest(bundle))
        _write_text(os.path.join(staging, IN_USE), "")
        shutil.rmtree(home, ignore_errors=True)
        os.rename(staging, home)
    except (OSError, py_compile.PyCompileError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise InstallError(f"cannot write the bundle to {home}: {exc}") from exc


def _write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def manifest(bundle: Plan) -> str:
    need = needed_glibc(bundle)
    data = {
        "id": bundle.ident,
        "python": bundle.version,
        "files": len(bundle.files) + 3,  # + launch.py, manifest.json, complete
        "glibc": elf.format_version(need) if need else None,
        "leftOut": list(bundle.left_out),
    }
    return json.dumps(data, indent=1) + "\n"


HEADER = "podwall CNI plugin launcher, written by `podwall cni install`; do not edit"


def launch_script() -> str:
    """The bundle's ``launch.py``: marks the bundle in use, puts ``site`` first, runs the plugin.

    The shared flock on ``complete`` lasts as long as the process (the file
    descriptor is never closed; it is not inherited by the tools the plugin
    runs): the pruner removes a retired bundle only when it can take the lock
    exclusively, so a run that started from it keeps its lazy imports.
    """
    return "\n".join(
        [
            f'"""{HEADER}."""',
            "import fcntl, os, sys",
            "",
            'home = __file__.rpartition("/")[0]',
            "try:",
            f'    fcntl.flock(os.open(home + "/{IN_USE}", os.O_RDONLY), fcntl.LOCK_SH)',
            "except OSError:",
            "    pass",
            'sys.path[:0] = [home + "/site"]',
            "from firewall_plugin.cni import run_and_exit",
            "",
            "run_and_exit()",
            "",
        ]
    )
