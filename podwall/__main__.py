"""``podwall <command> ...``: pick the subcommand module, let it parse the rest.

A subcommand module provides ``configure(parser)`` (adds its arguments) and
``run(args) -> int`` (does the work, returns the exit status).  ``podwall
--version`` prints the installed version.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: command → (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "cni": ("podwall.cmd_cni", "install, uninstall or run the CNI plugin"),
    "agent": ("podwall.cmd_agent", "run the per-node agent (kopf)"),
    "relay": ("podwall.cmd_relay", "serve the cluster's pods, slim, to many agents"),
    "explain": ("podwall.cmd_explain", "explain verdicts, from YAML files or a live cluster"),
    "status": ("podwall.cmd_status", "on how many nodes each policy is programmed, and problems"),
    "lab": ("podwall.cmd_lab", "a virtual multi-node cluster on this machine"),
    "demo": ("podwall.cmd_demo", "run the demo"),
}


def version() -> str:
    """The installed distribution's version (the source tree's when not installed)."""
    from importlib import metadata

    try:
        return metadata.version("podwall")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def top_parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="podwall",
        description="podwall: a NetworkPolicy firewall for Kubernetes nodes.",
        epilog="podwall COMMAND --help tells more about each command.",
    )
    top.add_argument("--version", action="version", version=f"podwall {version()}")
    top.add_argument(
        "command",
        choices=sorted(COMMANDS),
        help="; ".join(f"{name}: {text}" for name, (_, text) in sorted(COMMANDS.items())),
    )
    return top


def command_parser(name: str) -> argparse.ArgumentParser:
    """The parser of ``podwall NAME`` (imports the subcommand's module)."""
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"podwall {name}", description=COMMANDS[name][1])
    module.configure(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        top_parser().parse_args(argv[:1] or ["--help"])
        return 2
    module_name = COMMANDS[argv[0]][0]
    try:
        parser = command_parser(argv[0])
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        print(f"podwall {argv[0]}: not available in this build", file=sys.stderr)
        return 2
    module = sys.modules[module_name]
    args = parser.parse_args(argv[1:])
    status: int = module.run(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
