"""``podwall <command> ...``: pick the subcommand module, let it parse the rest.

A subcommand module provides ``configure(parser)`` (adds its arguments) and
``run(args) -> int`` (does the work, returns the exit status).
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
    "explain": ("podwall.cmd_explain", "explain verdicts for pods from YAML files"),
    "lab": ("podwall.cmd_lab", "a virtual multi-node cluster on this machine"),
    "demo": ("podwall.cmd_demo", "run the demo"),
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = argparse.ArgumentParser(prog="podwall", description=__doc__)
    top.add_argument(
        "command",
        choices=sorted(COMMANDS),
        help="; ".join(f"{name}: {text}" for name, (_, text) in sorted(COMMANDS.items())),
    )
    if not argv or argv[0] not in COMMANDS:
        top.parse_args(argv[:1] or ["--help"])
        return 2
    module_name, text = COMMANDS[argv[0]]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        print(f"podwall {argv[0]}: not available in this build", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog=f"podwall {argv[0]}", description=text)
    module.configure(parser)
    args = parser.parse_args(argv[1:])
    status: int = module.run(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
