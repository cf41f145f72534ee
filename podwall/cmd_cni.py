"""``podwall cni install|uninstall``: put the podwall plugin on a node, or take it off.

``install`` writes ``<bin-dir>/podwall`` and chains a podwall entry into the
primary CNI config (``firewall_install.conf``); with ``--watch`` it stays
running, re-checks every ``--watch-interval`` seconds and repairs both when the
primary CNI rewrites its config or a new primary file appears, and on
SIGTERM/SIGINT exits 0.  ``--uninstall-on-exit`` (``=always``, the default)
reverts before exiting; ``--uninstall-on-exit=if-daemonset-gone`` reverts only
when the API server says the DaemonSet (``--daemonset``, else env
``POD_NAMESPACE``/``DAEMONSET_NAME``) is gone or being deleted
(``firewall_install.removal``; in-cluster config, or ``--kubeconfig``).
``uninstall`` reverts both; it succeeds when nothing is installed.  ``glibc``
prints the glibc floor of ELF files (default: the bundle ``--bundle`` would
write).

Flags, messages and exit codes only: the work lives in ``firewall_install``.
Errors print ``podwall cni <verb>: <message>`` on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from firewall_install import apiclient, conf, launcher, removal
from firewall_install.errors import InstallError
from firewall_plugin import config, conflist

#: CLI flag dest → conflist key of the podwall entry
SETTING_FLAGS = {
    "backend": "backend",
    "pod_default": "podDefault",
    "deny_action": "denyAction",
    "state_dir": "stateDir",
    "run_dir": "runDir",
    "agent_timeout_ms": "agentTimeoutMs",
    "ensure_bridge_netfilter": "ensureBridgeNetfilter",
    "mark_bit": "markBit",
}


def configure(parser: argparse.ArgumentParser) -> None:
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="install|uninstall|glibc")
    add = verbs.add_parser("install", help="write the executable and chain podwall in")
    _common(add)
    _settings(add)
    add.add_argument("--python", help="interpreter for the executable (default: this one)")
    add.add_argument(
        "--bundle",
        action="store_true",
        help="copy this interpreter and the modules the plugin loads into <bin-dir>/podwall.d "
        "(for hosts without Python)",
    )
    add.add_argument(
        "--host-root",
        default="/",
        metavar="PATH",
        help="with --bundle: the host's file system as seen here (its /usr and /lib), "
        "to check its glibc (default /: running on the host)",
    )
    add.add_argument("--watch", action="store_true", help="keep the chain in place until stopped")
    add.add_argument(
        "--watch-interval", type=float, default=1.0, help="seconds between checks (default 1)"
    )
    add.add_argument(
        "--uninstall-on-exit",
        nargs="?",
        const=removal.ALWAYS,
        choices=removal.MODES,
        metavar="WHEN",
        help="with --watch: on SIGTERM/SIGINT revert before exiting; WHEN is 'always' "
        "(the default) or 'if-daemonset-gone' (only when the API server says the DaemonSet "
        "is gone or being deleted: not on restarts and rolling updates)",
    )
    add.add_argument(
        "--daemonset",
        metavar="NAMESPACE/NAME",
        help="for if-daemonset-gone: the DaemonSet (default: env POD_NAMESPACE/DAEMONSET_NAME)",
    )
    add.add_argument(
        "--kubeconfig",
        metavar="PATH",
        help="for if-daemonset-gone: reach the API server with this kubeconfig "
        "(default: the pod's service account, in-cluster)",
    )
    remove = verbs.add_parser("uninstall", help="remove podwall from the configs and bin dir")
    _common(remove)
    floor = verbs.add_parser("glibc", help="print the highest GLIBC version ELF files need")
    floor.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="files or folders (default: the files of the bundle --bundle would write)",
    )
    floor.add_argument("-v", "--verbose", action="store_true", help="one line per ELF file")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bin-dir", default="/opt/cni/bin", help="default /opt/cni/bin")
    parser.add_argument("--conf-dir", default="/etc/cni/net.d", help="default /etc/cni/net.d")


def _settings(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("plugin settings (left out: the plugin's default)")
    group.add_argument("--backend", choices=config.BACKENDS, help="netfilter backend")
    group.add_argument(
        "--pod-default", choices=config.POD_DEFAULTS, help="a new pod until programmed"
    )
    group.add_argument("--deny-action", choices=config.DENY_ACTIONS, help="what denied packets get")
    group.add_argument("--state-dir", metavar="PATH", help="endpoint records")
    group.add_argument("--run-dir", metavar="PATH", help="lock, agent socket")
    group.add_argument(
        "--agent-timeout-ms", type=int, metavar="MS", help="how long ADD waits for the agent"
    )
    group.add_argument(
        "--no-ensure-bridge-netfilter",
        dest="ensure_bridge_netfilter",
        action="store_const",
        const=False,
        help="do not set net.bridge.bridge-nf-call-ip(6)tables at ADD",
    )
    group.add_argument("--mark-bit", type=int, metavar="0..31", help="reserved packet-mark bit")


def run(args: argparse.Namespace) -> int:
    verb: str = args.verb
    try:
        if verb == "glibc":
            return print_glibc(args.paths, verbose=args.verbose)
        if verb == "uninstall":
            _print(_uninstall(args), verb)
            return 0
        entry = conf.build_entry(settings_of(args))
        if args.uninstall_on_exit and not args.watch:
            raise InstallError("--uninstall-on-exit needs --watch")
        if args.bundle:
            check_host_tools(args, entry)
        if args.watch:
            return watch(args, entry, exit_policy(args))
        _print(_install(args, entry), verb)
        return 0
    except InstallError as exc:
        print(f"podwall cni {verb}: {exc}", file=sys.stderr)
        return 1


def print_glibc(paths: list[str], *, verbose: bool) -> int:
    """Print the glibc floor of ``paths`` (or of this interpreter's bundle)."""
    from firewall_install import bundle, elf, glibc

    if not paths:
        paths = [source for dest, source in bundle.plan().files if not dest.endswith(".pyc")]
    need, each = glibc.floor(paths)
    if verbose:
        for path, version in each:
            print(f"GLIBC_{elf.format_version(version)}\t{path}")
    if need is None:
        print("no GLIBC symbol versions needed")
    else:
        print(f"glibc >= {elf.format_version(need)}")
    return 0


def check_host_tools(args: argparse.Namespace, entry: conflist.Network) -> None:
    """Refuse a backend the bundle cannot run; warn (once) about tools the host lacks."""
    from firewall_install import hosttools

    backend = str(entry.get("backend", "auto"))
    hosttools.refusal(backend, bundled=True)
    for line in hosttools.warnings(args.host_root, backend):
        print(f"podwall cni install: warning: {line}", file=sys.stderr, flush=True)


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    """The podwall entry's keys for the flags that were given."""
    given = {key: getattr(args, dest) for dest, key in SETTING_FLAGS.items()}
    return {key: value for key, value in given.items() if value is not None}


def exit_policy(args: argparse.Namespace) -> removal.ExitPolicy | None:
    """What ``--uninstall-on-exit`` asks for; bad or missing settings fail here, at start."""
    mode: str | None = args.uninstall_on_exit
    if mode != removal.IF_DAEMONSET_GONE:
        if args.daemonset is not None or args.kubeconfig is not None:
            raise InstallError(
                f"--daemonset and --kubeconfig need --uninstall-on-exit={removal.IF_DAEMONSET_GONE}"
            )
        return removal.Always() if mode == removal.ALWAYS else None
    namespace, name = removal.parse_daemonset(args.daemonset, os.environ)
    if args.kubeconfig is not None:
        target = apiclient.from_kubeconfig(args.kubeconfig)
    else:
        target = apiclient.in_cluster()
    return removal.IfDaemonSetGone(target, namespace=namespace, name=name)


def _install(args: argparse.Namespace, entry: conflist.Network) -> conf.Report:
    report = launcher.install_executable(
        args.bin_dir, python=args.python, bundled=args.bundle, host_root=args.host_root
    )
    report.extend(conf.install_conf(args.conf_dir, entry))
    return report


def _uninstall(args: argparse.Namespace) -> conf.Report:
    report = conf.uninstall_conf(args.conf_dir)
    report.extend(launcher.uninstall_executable(args.bin_dir))
    return report


def watch(
    args: argparse.Namespace, entry: conflist.Network, policy: removal.ExitPolicy | None
) -> int:
    """Install, then repair drift every interval until SIGTERM/SIGINT; then ask ``policy``.

    Polling (not inotify): a check is one listdir and one small read, so once a
    second costs nothing measurable, and it survives what inotify misses
    (overflow, the folder replaced, a hostPath re-mounted).  Failures are logged
    once per distinct message and retried: a DaemonSet may start before the
    primary CNI has written its config.
    """
    stop = threading.Event()
    restore = _on_signals(lambda: stop.set())
    last_error = ""
    try:
        while True:
            try:
                _print(_install(args, entry), "install")
                last_error = ""
            except InstallError as exc:
                if str(exc) != last_error:
                    _log(f"{exc} (retrying)")
                last_error = str(exc)
            note = policy.observe() if policy is not None else None
            if note is not None:
                _log(note)
            if stop.wait(args.watch_interval):
                break
    finally:
        restore()
    if policy is not None:
        uninstall, why = policy.decide()
        _log(f"on exit: {why}")
        if uninstall:
            _print(_uninstall(args), "uninstall")
    return 0


def _log(line: str) -> None:
    print(f"podwall cni install: {line}", file=sys.stderr, flush=True)


def _on_signals(action: Callable[[], None]) -> Callable[[], None]:
    """Run ``action`` on SIGTERM and SIGINT; returns a function that restores the old handlers."""

    def handler(signum: int, frame: FrameType | None) -> None:
        action()

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, previous in old.items():
            signal.signal(sig, previous)

    return restore


def _print(report: conf.Report, verb: str) -> None:
    for line in report.actions:
        print(line, flush=True)
    for line in report.warnings:
        print(f"podwall cni {verb}: warning: {line}", file=sys.stderr, flush=True)
