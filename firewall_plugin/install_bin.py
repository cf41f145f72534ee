"""Write the ``podwall`` executable into the CNI bin dir, or remove it.

Three ways to launch the plugin (``firewall_plugin.cni.run_and_exit``):

* **local** (default): a Python script whose shebang is the running
  interpreter with ``-IS`` (isolated, no ``site``); the script puts the
  package's folder and this interpreter's site-packages on ``sys.path`` itself.
  Skipping ``site`` saves ~8 ms of the ~30 ms start-up (measured 2-vCPU VM).
* **python**: ``--python PATH``: shebang ``PATH -I``; that interpreter must be
  able to import ``firewall_plugin`` by itself.
* **bundle**: ``--bundle`` copies the running interpreter, its standard
  library (no tests, no site-packages) and the ``firewall_plugin`` package (plus
  ``iptc`` when installed) into ``<bin-dir>/podwall.d/<id>/``, for hosts without
  a Python of their own.  The launcher is a ``/bin/sh`` script that sets
  ``LD_LIBRARY_PATH`` when the interpreter links a shared libpython.  Each
  bundle lives in its own ``<id>`` folder: the new one is complete before the
  launcher is switched to it by rename, and older ones are removed after, so a
  plugin run never sees a half-copied bundle.  Neither the launcher nor the
  bundle names the folder they were installed through: the installer usually
  writes through a mount (``/host/opt/cni/bin`` in the DaemonSet) that the
  host, which runs the plugin, knows by another path.  The launcher finds
  ``podwall.d`` next to itself (``$0``, symlinks resolved), the bundle's
  ``launch.py`` its ``site`` folder next to itself.

The launcher is written atomically (temp file + rename), mode 0755.  No kopf,
no kernel access.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import site
import sys
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass

import firewall_plugin
from firewall_plugin.atomicfile import atomic_write
from firewall_plugin.install import InstallError, Report

EXECUTABLE = "podwall"
BUNDLE_DIR = "podwall.d"
MAX_SHEBANG = 255  # Linux reads the first 256 bytes of a script
STDLIB_SKIP = (
    "site-packages",
    "dist-packages",
    "test",
    "idlelib",
    "tkinter",
    "turtledemo",
    "ensurepip",
    "lib2to3",
)
HEADER = "podwall CNI plugin launcher, written by `podwall cni install`; do not edit"
# run_and_exit skips interpreter finalisation: ~4 ms CPU less per pod (bench_plugin)
ENTRY = "from firewall_plugin.cni import run_and_exit\n\nrun_and_exit()\n"
#: changes whenever the bundle's files change shape (part of the bundle id)
BUNDLE_LAYOUT = "2: launcher and launch.py relative to themselves"


@dataclass(frozen=True, slots=True)
class Launch:
    """How the executable starts Python: interpreter, flags, paths to add."""

    python: str
    flags: str = "-IS"
    sys_path: tuple[str, ...] = ()


def package_root() -> str:
    """The folder that holds the ``firewall_plugin`` package."""
    return os.path.dirname(os.path.dirname(os.path.abspath(firewall_plugin.__file__)))


def local_launch() -> Launch:
    """Run with this interpreter, ``-IS``, and its import paths spelled out."""
    paths = [package_root(), *site.getsitepackages()]
    unique = tuple(dict.fromkeys(p for p in paths if os.path.isdir(p)))
    return Launch(python=sys.executable, sys_path=unique)


def python_script(launch: Launch) -> str:
    """The launcher as a Python script (local and --python modes)."""
    shebang = f"#!{launch.python} {launch.flags}".rstrip()
    check_shebang(shebang)
    return shebang + "\n" + script_body(launch.sys_path)


def script_body(sys_path: Sequence[str]) -> str:
    """Python that puts ``sys_path`` first and runs the plugin (``cni.run_and_exit``)."""
    lines = [f'"""{HEADER}."""', "import sys", ""]
    if sys_path:
        lines.append(f"sys.path[:0] = {list(sys_path)!r}")
    return "\n".join(lines) + "\n" + ENTRY


def bundle_script(ident: str, *, version: str, shared: bool) -> str:
    """The ``/bin/sh`` launcher of bundle ``ident``, found next to the launcher itself.

    ``$0`` is the path the runtime executed (``<bin-dir>/podwall``); when it is
    a symlink it is resolved first, so a link to the launcher from elsewhere
    still finds ``podwall.d``.  No absolute path is written: the same text is
    right wherever the bin folder is mounted, so installs through different
    mounts agree and rewrite nothing.
    """
    home = f"$here/{BUNDLE_DIR}/{ident}"  # ident: b-<hex>, nothing to quote
    env = f'LD_LIBRARY_PATH="{home}/python/lib" ' if shared else ""
    lines = [
        "#!/bin/sh",
        f"# {HEADER}.",
        f"# It runs the bundle in {BUNDLE_DIR}/ next to itself.",
        "self=$0",
        'if [ -L "$self" ]; then self=$(readlink -f "$self") || exit 1; fi',
        "case $self in */*) here=${self%/*} ;; *) here=. ;; esac",
        f'{env}exec "{home}/python/bin/{version}" -IS "{home}/launch.py" "$@"',
    ]
    return "\n".join(lines) + "\n"


def bundle_entry() -> str:
    """The bundle's ``launch.py``: puts the ``site`` folder next to it first, runs the plugin."""
    lines = [f'"""{HEADER}."""', "import sys", ""]
    lines.append('sys.path[:0] = [__file__.rpartition("/")[0] + "/site"]')
    return "\n".join(lines) + "\n" + ENTRY


def check_shebang(shebang: str) -> None:
    if any(c.isspace() for c in shebang.split(" ", 1)[0]) or len(shebang) > MAX_SHEBANG:
        raise InstallError(f"cannot use {shebang[2:]!r} in a #! line (spaces or too long)")


def install_executable(
    bin_dir: str,
    *,
    python: str | None = None,
    bundle: bool = False,
) -> Report:
    """Write ``<bin_dir>/podwall``; nothing is rewritten when it is already right."""
    if python is not None and bundle:
        raise InstallError("--python and --bundle exclude each other")
    if not os.path.isdir(bin_dir):
        raise InstallError(f"CNI bin dir {bin_dir} does not exist")
    report = Report()
    if bundle:
        text, keep = _bundle(bin_dir, report)
    else:
        if python is not None and not os.access(python, os.X_OK):
            raise InstallError(f"{python} is not an executable interpreter")
        launch = Launch(python=python, flags="-I") if python else local_launch()
        text, keep = python_script(launch), None
    path = os.path.join(bin_dir, EXECUTABLE)
    if _read(path) != text or not os.access(path, os.X_OK):
        _write_or_fail(path, text)
        report.actions.append(f"wrote {path}")
    _prune_bundles(bin_dir, keep=keep)
    return report


def uninstall_executable(bin_dir: str) -> Report:
    """Remove ``<bin_dir>/podwall`` and ``<bin_dir>/podwall.d``; absent is fine."""
    report = Report()
    path = os.path.join(bin_dir, EXECUTABLE)
    try:
        os.unlink(path)
        report.actions.append(f"removed {path}")
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise InstallError(f"cannot remove {path}: {exc}") from exc
    bundles = os.path.join(bin_dir, BUNDLE_DIR)
    if os.path.isdir(bundles):
        shutil.rmtree(bundles, ignore_errors=True)
        report.actions.append(f"removed {bundles}")
    return report


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError):
        return None


def _write_or_fail(path: str, text: str) -> None:
    try:
        atomic_write(path, text, mode=0o755)
    except OSError as exc:
        raise InstallError(f"cannot write {path}: {exc}") from exc


# ---------------------------------------------------------------- bundle


def bundle_id() -> str:
    """Names a bundle by what it holds: interpreter version and package files."""
    digest = hashlib.sha256(f"{sys.version}\n{BUNDLE_LAYOUT}".encode())
    for root in _bundled_packages():
        for folder, dirs, files in sorted(os.walk(root)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                st = os.stat(os.path.join(folder, name))
                digest.update(f"{folder}/{name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return "b-" + digest.hexdigest()[:16]


def _bundled_packages() -> list[str]:
    roots = [os.path.dirname(os.path.abspath(firewall_plugin.__file__))]
    with contextlib.suppress(ImportError):
        import importlib.util

        spec = importlib.util.find_spec("iptc")
        if spec is not None and spec.origin is not None:
            roots.append(os.path.dirname(spec.origin))
    return roots


def _bundle(bin_dir: str, report: Report) -> tuple[str, str]:
    ident = bundle_id()
    home = os.path.join(bin_dir, BUNDLE_DIR, ident)
    if not os.path.isfile(os.path.join(home, "complete")):
        _copy_bundle(home)
        report.actions.append(f"copied Python {sys.version.split()[0]} and podwall into {home}")
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    shared = bool(sysconfig.get_config_var("Py_ENABLE_SHARED"))
    return bundle_script(ident, version=version, shared=shared), ident


def _copy_bundle(home: str) -> None:
    staging = f"{home}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    try:
        _copy_interpreter(staging, version)
        site_dir = os.path.join(staging, "site")
        for root in _bundled_packages():
            shutil.copytree(root, os.path.join(site_dir, os.path.basename(root)), symlinks=True)
        with open(os.path.join(staging, "launch.py"), "w", encoding="utf-8") as handle:
            handle.write(bundle_entry())
        open(os.path.join(staging, "complete"), "w").close()
        shutil.rmtree(home, ignore_errors=True)
        os.rename(staging, home)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise InstallError(f"cannot copy the bundle to {home}: {exc}") from exc


def _copy_interpreter(staging: str, version: str) -> None:
    prefix = os.path.join(staging, "python")
    os.makedirs(os.path.join(prefix, "bin"))
    binary = os.path.join(prefix, "bin", version)
    shutil.copy2(os.path.realpath(sys.executable), binary)
    stdlib = sysconfig.get_paths()["stdlib"]
    skip = shutil.ignore_patterns(*STDLIB_SKIP, "config-*")
    shutil.copytree(stdlib, os.path.join(prefix, "lib", version), ignore=skip, symlinks=True)
    if sysconfig.get_config_var("Py_ENABLE_SHARED"):
        libdir = str(sysconfig.get_config_var("LIBDIR"))
        for name in os.listdir(libdir):
            if name.startswith("libpython") and ".so" in name:
                shutil.copy2(os.path.join(libdir, name), os.path.join(prefix, "lib", name))


def _prune_bundles(bin_dir: str, *, keep: str | None) -> None:
    """Remove bundles other than ``keep`` (all of them when not in bundle mode)."""
    bundles = os.path.join(bin_dir, BUNDLE_DIR)
    if not os.path.isdir(bundles):
        return
    for name in os.listdir(bundles):
        if name != keep:
            shutil.rmtree(os.path.join(bundles, name), ignore_errors=True)
    if keep is None:
        with contextlib.suppress(OSError):
            os.rmdir(bundles)
