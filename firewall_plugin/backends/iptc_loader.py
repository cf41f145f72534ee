"""Import python-iptables (``iptc``) once, cheaply, on first use.

A plain ``import iptc`` costs ~257 ms: it imports distutils through setuptools
and runs ``ldconfig``/``gcc`` through ``ctypes.util.find_library`` to locate
libxtables, its extension folder and its own ``libxtwrapper`` (docs/facts.md).
Before importing, ``prepare_environment`` points it at those files directly
(``XTABLES_LIBDIR``, ``IPTABLES_LIBDIR``, ``PYTHON_IPTABLES_XTABLES_VERSION``,
``SETUPTOOLS_USE_DISTUTILS=stdlib``), found without any subprocess: the folder
of ``libxtables.so.<major>`` as the dynamic linker resolved it (so no
architecture triplet is hard-coded), and the folder of the ``libxtwrapper``
extension.  Variables already set by the user win.

Only the ``iptc`` backend calls this; nothing else may import ``iptc``.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import importlib.util
import os
import sys
import warnings
from types import ModuleType

from firewall_plugin.errors import BackendError

XTABLES_MAJORS = ("12", "11", "10")


def _loaded_path(soname: str) -> str | None:
    """The file of the already loaded library ``soname`` (from /proc/self/maps)."""
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and os.path.basename(fields[5].rstrip()).startswith(soname):
                return fields[5].rstrip()
    return None


def find_libxtables() -> tuple[str, str] | None:
    """``(directory, major)`` of the libxtables the dynamic linker picks."""
    for major in XTABLES_MAJORS:
        soname = f"libxtables.so.{major}"
        try:
            ctypes.CDLL(soname)
        except OSError:
            continue
        found = _loaded_path(soname)
        if found:
            return os.path.dirname(found), major
    return None


def prepare_environment(environ: dict[str, str] | os._Environ[str] = os.environ) -> None:
    """Set the variables that make ``import iptc`` skip its slow searches."""
    environ.setdefault("SETUPTOOLS_USE_DISTUTILS", "stdlib")
    found = find_libxtables()
    if found is None:
        return  # python-iptables will search (slowly) and report what is missing
    libdir, major = found
    environ.setdefault("PYTHON_IPTABLES_XTABLES_VERSION", major)
    xtables_dir = os.path.join(libdir, "xtables")
    if os.path.isdir(xtables_dir):
        environ.setdefault("XTABLES_LIBDIR", xtables_dir)
    search = [libdir]
    spec = importlib.util.find_spec("libxtwrapper")
    if spec is not None and spec.origin:
        search.append(os.path.dirname(spec.origin))
    environ.setdefault("IPTABLES_LIBDIR", ":".join(search))


def _use_stdlib_distutils() -> None:
    """setuptools' ``distutils-precedence.pth`` installs its distutils shim at
    interpreter start, before the variable can be set from here; remove the
    shim again when the variable asks for the standard library's distutils."""
    hack = sys.modules.get("_distutils_hack")
    if hack is not None and os.environ.get("SETUPTOOLS_USE_DISTUTILS") == "stdlib":
        remove = getattr(hack, "remove_shim", None)
        if callable(remove):
            remove()


@functools.cache
def load() -> ModuleType:
    """The ``iptc`` module, imported once with the fast environment."""
    prepare_environment()
    _use_stdlib_distutils()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # stdlib distutils
            return importlib.import_module("iptc")
    except Exception as exc:  # ImportError, XTablesError, OSError from ctypes
        raise BackendError(f"cannot load python-iptables: {exc}") from exc
