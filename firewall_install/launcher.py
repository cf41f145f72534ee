"""Write the ``podwall`` executable into the CNI bin dir, or remove it.

Three ways to launch the plugin (``firewall_plugin.cni.run_and_exit``):

* **local** (default): a Python script whose shebang is the running
  interpreter with ``-IS`` (isolated, no ``site``); the script puts the
  package's folder and this interpreter's site-packages on ``sys.path`` itself.
  Skipping ``site`` saves ~8 ms of the ~30 ms start-up (measured 2-vCPU VM).
* **python**: ``--python PATH``: shebang ``PATH -I``; that interpreter must be
  able to import ``firewall_plugin`` by itself.
* **bundle**: ``--bundle`` writes ``<bin-dir>/podwall.d/<id>/``
  (``firewall_install.bundle``: the running interpreter and only the modules
  the CNI path loads), for hosts without a Python of their own, after checking
  that the host's glibc can run it (``firewall_install.glibc``).  The launcher
  is a ``/bin/sh`` script that sets ``LD_LIBRARY_PATH`` when the interpreter
  links a shared libpython.

Upgrades never pull a bundle from under a running plugin: the new bundle is
complete before the launcher is switched to it by rename; an older one is
first *retired* (a ``retired`` file, dated), and removed only once it has been
retired for ``grace`` seconds **and** no plugin run holds its in-use lock
(``bundle.launch_script``).  ``--watch`` prunes on every round; a bundle that
becomes current again is un-retired.

Neither the launcher nor the bundle names the folder they were installed
through: the installer usually writes through a mount (``/host/opt/cni/bin``
in the DaemonSet) that the host, which runs the plugin, knows by another path.
The launcher finds ``podwall.d`` next to itself (``$0``, symlinks resolved),
``launch.py`` its ``site`` folder next to itself.  The launcher is written
atomically (temp file + rename), mode 0755.  No kopf, no kernel access.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import shutil
import site
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import firewall_plugin
from firewall_install import bundle, glibc
from firewall_install.conf import Report
from firewall_install.errors import InstallError
from firewall_plugin.atomicfile import atomic_write

EXECUTABLE = "podwall"
BUNDLE_DIR = "podwall.d"
RETIRED = "retired"
#: seconds a retired bundle stays at least (a run needs milliseconds from exec to its lock)
GRACE = 60.0
MAX_SHEBANG = 255  # Linux reads the first 256 bytes of a script
HEADER = bundle.HEADER
# run_and_exit skips interpreter finalisation: ~4 ms CPU less per pod (bench_plugin)
ENTRY = "from firewall_plugin.cni import run_and_exit\n\nrun_and_exit()\n"


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
        f'{env}exec "{home}/python/bin/python{version}" -IS "{home}/launch.py" "$@"',
    ]
    return "\n".join(lines) + "\n"


def check_shebang(shebang: str) -> None:
    if any(c.isspace() for c in shebang.split(" ", 1)[0]) or len(shebang) > MAX_SHEBANG:
        raise InstallError(f"cannot use {shebang[2:]!r} in a #! line (spaces or too long)")


def install_executable(
    bin_dir: str,
    *,
    python: str | None = None,
    bundled: bool = False,
    host_root: str = "/",
    grace: float = GRACE,
    source: str | None = None,
) -> Report:
    """Write ``<bin_dir>/podwall``; nothing is rewritten when it is already right.

    ``source``: the folder holding the ``firewall_plugin`` to bundle (default:
    the imported one).
    """
    if python is not None and bundled:
        raise InstallError("--python and --bundle exclude each other")
    if not os.path.isdir(bin_dir):
        raise InstallError(f"CNI bin dir {bin_dir} does not exist")
    report = Report()
    keep = None
    if bundled:
        text, keep = _bundle(bin_dir, report, host_root=host_root, source=source)
    else:
        if python is not None and not os.access(python, os.X_OK):
            raise InstallError(f"{python} is not an executable interpreter")
        launch = Launch(python=python, flags="-I") if python else local_launch()
        text = python_script(launch)
    path = os.path.join(bin_dir, EXECUTABLE)
    if _read(path) != text or not os.access(path, os.X_OK):
        _write_or_fail(path, text)
        report.actions.append(f"wrote {path}")
    report.actions.extend(prune(bin_dir, keep=keep, grace=grace))
    return report


def uninstall_executable(bin_dir: str) -> Report:
    """Remove ``<bin_dir>/podwall`` and the bundles no plugin run is using."""
    report = Report()
    path = os.path.join(bin_dir, EXECUTABLE)
    try:
        os.unlink(path)
        report.actions.append(f"removed {path}")
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise InstallError(f"cannot remove {path}: {exc}") from exc
    report.actions.extend(prune(bin_dir, keep=None, grace=0.0))
    bundles = os.path.join(bin_dir, BUNDLE_DIR)
    if os.path.isdir(bundles):
        busy = sorted(os.listdir(bundles))
        report.warnings.append(f"left {', '.join(busy)} in {bundles}: a plugin run is using it")
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


def _bundle(bin_dir: str, report: Report, *, host_root: str, source: str | None) -> tuple[str, str]:
    plan = bundle.plan(source)
    _check_host(host_root, bundle.needed_glibc(plan))
    home = os.path.join(bin_dir, BUNDLE_DIR, plan.ident)
    if not os.path.isfile(os.path.join(home, bundle.IN_USE)):
        os.makedirs(os.path.dirname(home), exist_ok=True)
        bundle.write(home, plan)
        report.actions.append(f"copied Python {plan.version} and the podwall plugin into {home}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(home, RETIRED))  # current again (a rollback)
    return bundle_script(plan.ident, version=plan.version, shared=plan.shared), plan.ident


@functools.cache
def _check_host(host_root: str, needed: tuple[int, ...] | None) -> str:
    """``glibc.check_host``, once per process (``--watch`` installs every second)."""
    return glibc.check_host(host_root, needed)


def prune(bin_dir: str, *, keep: str | None, grace: float, now: float | None = None) -> list[str]:
    """Retire bundles other than ``keep``; remove those retired ``grace`` s ago and unused."""
    bundles = os.path.join(bin_dir, BUNDLE_DIR)
    if not os.path.isdir(bundles):
        return []
    now = time.time() if now is None else now
    done: list[str] = []
    for name in sorted(os.listdir(bundles)):
        path = os.path.join(bundles, name)
        if name == keep:
            continue
        if ".tmp-" in name or name.startswith(".trash-"):
            if now - _mtime(path) >= max(grace, 600.0) or grace == 0.0:
                shutil.rmtree(path, ignore_errors=True)  # a crashed install's leftovers
            continue
        retired = os.path.join(path, RETIRED)
        if not os.path.exists(retired):
            with contextlib.suppress(OSError):
                open(retired, "w").close()
            if grace > 0.0:
                continue
        if now - _mtime(retired) < grace:
            continue
        with _unused(path) as unused:
            if not unused:
                continue
            trash = os.path.join(bundles, f".trash-{name}")
            with contextlib.suppress(OSError):
                os.rename(path, trash)
                shutil.rmtree(trash, ignore_errors=True)
                done.append(f"removed the old bundle {path}")
    if keep is None:
        with contextlib.suppress(OSError):
            os.rmdir(bundles)
    return done


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


@contextlib.contextmanager
def _unused(path: str) -> Iterator[bool]:
    """True (holding the bundle's in-use lock exclusively) when no plugin run uses it."""
    try:
        fd = os.open(os.path.join(path, bundle.IN_USE), os.O_RDONLY)
    except OSError:
        yield True  # never completed: nothing can run from it
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
