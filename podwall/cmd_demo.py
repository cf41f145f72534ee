"""``podwall demo``: the same as ``podwall lab demo``."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", help="keep the lab up in DIR after the demo")
    parser.add_argument(
        "--no-colour", dest="colour", action="store_false", default=None, help="plain text"
    )


def run(args: argparse.Namespace) -> int:
    from firewall_lab.lab.demo import run_demo

    return run_demo(keep_dir=args.dir, colour=args.colour)
