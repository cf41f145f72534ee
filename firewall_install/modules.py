"""Which modules the host bundle carries: derived from the plugin's own imports.

Two steps, so the list follows the code without a hand-kept manifest:

1. **Static**, over ``firewall_plugin``'s sources (``ast``): starting at the
   entry module, every ``import`` of the package's modules, at module level or
   inside functions (the plugin imports lazily), is followed; imports under
   ``if TYPE_CHECKING:`` are not (they never run).  Modules listed in
   ``LEFT_OUT`` are not followed: the ``iptc`` backend needs python-iptables
   and the host's libiptc, which a bundle for "glibc and a kernel" cannot
   carry.  The result: the package's modules on the CNI path plus the names
   they import from outside the package.
2. **Dynamic**, in a fresh ``python -I -S`` of the interpreter that will be
   bundled: import all of them and report ``sys.modules`` with each module's
   file.  That adds what the standard library imports at module level, and
   the modules Python itself loads at start-up (``encodings``...).

Every module must come from the standard library or from ``firewall_plugin``;
anything else (a third-party import on the CNI path) raises ``ModulesError``.
Lazy imports *inside* standard-library functions are the one thing neither
step sees: the tests run every verb through an installed bundle for that.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
from dataclasses import dataclass

from firewall_install.errors import InstallError

PACKAGE = "firewall_plugin"
ENTRY = "firewall_plugin.cni"
#: package modules the bundle leaves out, and why
LEFT_OUT = {
    "firewall_plugin.backends.iptc_backend": "needs python-iptables and the host's libiptc",
    "firewall_plugin.backends.iptc_loader": "needs python-iptables and the host's libiptc",
}
#: codecs Python may pick for stdio under other locales (tiny; always carried)
ALWAYS = ("encodings.ascii", "encodings.latin_1", "encodings.utf_8")

_PROBE = r"""
import json, sys
sys.path[:0] = [ROOT]
for name in INSIDE + REQUIRED:
    __import__(name)
for name in OPTIONAL:
    try:
        __import__(name)
    except ModuleNotFoundError:  # `from m import f` names no module; `try: import m` guards
        pass
maps = open("/proc/self/maps").read().split("\n")
libs = sorted({line.split()[-1] for line in maps if "libpython" in line and "/" in line})
files = {n: getattr(m, "__file__", None) for n, m in list(sys.modules.items())}
import sysconfig
print(json.dumps({"files": files, "libpython": libs, "stdlib": sysconfig.get_paths()["stdlib"],
    "dynload": sysconfig.get_config_var("DESTSHARED"), "executable": sys.executable,
    "version": "%d.%d" % sys.version_info[:2]}))
"""


class ModulesError(InstallError):
    """The CNI path imports something a self-contained bundle cannot carry."""


@dataclass(frozen=True, slots=True)
class Closure:
    """The modules one interpreter loads for the plugin, with their files."""

    files: dict[str, str]  # module name → source or extension file
    builtin: tuple[str, ...]  # compiled into the interpreter: nothing to copy
    libpython: str | None  # the shared libpython the interpreter loaded, if any
    stdlib: str
    executable: str
    version: str  # "3.11"


def package_modules(root: str) -> tuple[set[str], dict[str, bool]]:
    """(package modules on the CNI path, outside names they import → required).

    An outside import is optional when it sits in a ``try`` that catches
    ``ImportError`` (the body or its handlers: a fallback pair such as
    ``_sha2``/``_sha256`` across Python versions), or when it names something
    imported *from* a module (``from json import loads``: ``json.loads``).
    """
    seen: set[str] = set()
    outside: dict[str, bool] = {}
    todo = [ENTRY]
    while todo:
        name = todo.pop()
        if name in seen or any(name.startswith(m) for m in LEFT_OUT) or not _source(root, name):
            continue
        seen.add(name)
        for imported, required in _imports(root, name):
            if imported.split(".")[0] != PACKAGE:
                outside[imported] = outside.get(imported, False) or required
                continue
            parts = imported.split(".")
            for depth in range(1, len(parts) + 1):  # importing a.b.c runs a and a.b too
                todo.append(".".join(parts[:depth]))
    return seen, outside


def _source(root: str, name: str) -> str | None:
    base = os.path.join(root, *name.split("."))
    for path in (base + ".py", os.path.join(base, "__init__.py")):
        if os.path.isfile(path):
            return path
    return None  # a name imported from a module, not a module


def _imports(root: str, name: str) -> list[tuple[str, bool]]:
    """(imported name, required) for every import ``name`` executes."""
    path = _source(root, name)
    if path is None:
        return []
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), path)
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    found: list[tuple[str, bool]] = []
    for node, guarded in _executed(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, not guarded) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, package)
            found.append((base, not guarded))
            found += [(f"{base}.{alias.name}", False) for alias in node.names if alias.name != "*"]
    return [(n, required) for n, required in found if n != "__future__"]


def _absolute(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return node.module or ""
    parts = package.split(".")
    base = ".".join(parts[: len(parts) - node.level + 1])
    return f"{base}.{node.module}" if node.module else base


def _executed(tree: ast.AST) -> list[tuple[ast.AST, bool]]:
    """Every node (with: inside a ``try`` that catches ImportError) except the
    bodies of ``if TYPE_CHECKING:`` blocks."""
    found: list[tuple[ast.AST, bool]] = []
    todo: list[tuple[ast.AST, bool]] = [(tree, False)]
    while todo:
        node, guarded = todo.pop()
        found.append((node, guarded))
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend((child, guarded) for child in node.orelse)
            continue
        inner = guarded or (isinstance(node, ast.Try) and _catches_import_error(node))
        todo.extend((child, inner) for child in ast.iter_child_nodes(node))
    return found


def _catches_import_error(node: ast.Try) -> bool:
    names = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}
    for handler in node.handlers:
        kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        if handler.type is None or any(isinstance(k, ast.Name) and k.id in names for k in kinds):
            return True
    return False


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def closure(python: str, root: str) -> Closure:
    """Import the CNI path in a fresh ``python -I -S`` and report what it loaded."""
    inside, outside = package_modules(root)
    required = sorted(n for n, needed in outside.items() if needed)
    optional = sorted({n for n, needed in outside.items() if not needed} | set(ALWAYS))
    program = (
        _PROBE.replace("ROOT", repr(root))
        .replace("INSIDE", repr(sorted(inside)))
        .replace("REQUIRED", repr(required))
        .replace("OPTIONAL", repr(optional))
    )
    done = subprocess.run(
        [python, "-I", "-S", "-c", program], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        raise ModulesError(f"the plugin's modules do not import in {python}: {tail[0]}")
    report = json.loads(done.stdout)
    files = {n: f for n, f in report["files"].items() if f}
    builtin = tuple(sorted(n for n, f in report["files"].items() if not f))
    _check_origins(files, root=root, stdlib=report["stdlib"])
    libs = report["libpython"]
    return Closure(
        files=files,
        builtin=builtin,
        libpython=libs[0] if libs else None,
        stdlib=report["stdlib"],
        executable=report["executable"],
        version=report["version"],
    )


def _check_origins(files: dict[str, str], *, root: str, stdlib: str) -> None:
    package = os.path.join(root, PACKAGE) + os.sep
    foreign = {
        n: f
        for n, f in files.items()
        if not f.startswith(package) and not f.startswith(stdlib + os.sep) and n != "__main__"
    }
    if foreign:
        listed = ", ".join(f"{n} ({f})" for n, f in sorted(foreign.items()))
        raise ModulesError(
            f"the CNI path imports modules from outside the standard library and "
            f"{PACKAGE}: {listed}; the host bundle cannot carry them"
        )
