"""Argument types every ``podwall`` subcommand shares.

``--port P[/PROTO]`` is one syntax everywhere (``80``, ``80/TCP``,
``53/udp``); ``port_and_protocol`` reconciles it with an optional
``--protocol`` flag.  Parsing only: no podwall imports beyond the standard
library, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse

PROTOCOLS = ("TCP", "UDP", "SCTP")


#: ``(port, protocol or None)`` as ``--port`` gave it
PortSpec = tuple[int, str | None]


def port(text: str) -> PortSpec:
    """argparse type of ``--port``: ``P`` or ``P/PROTO`` (PROTO: TCP, UDP, SCTP)."""
    number, slash, named = text.partition("/")
    protocol = named.upper() or None
    if slash and protocol not in PROTOCOLS:
        raise argparse.ArgumentTypeError(
            f"{text}: protocol must be one of {', '.join(PROTOCOLS)} (e.g. 80/TCP)"
        )
    if not number.isdigit() or not 1 <= int(number) <= 65535:
        raise argparse.ArgumentTypeError(f"{text}: not a port number 1-65535 (e.g. 80/TCP)")
    return (int(number), protocol)


def add_port(parser: argparse.ArgumentParser, *, required: bool, what: str) -> None:
    """``--port P[/PROTO]`` and ``--protocol`` (the same thing, kept for scripts)."""
    parser.add_argument(
        "--port",
        type=port,
        required=required,
        metavar="P[/PROTO]",
        help=f"{what}: a port number, optionally with TCP, UDP or SCTP (e.g. 80/TCP)",
    )
    parser.add_argument(
        "--protocol",
        type=str.upper,
        choices=PROTOCOLS,
        help="the protocol, when --port does not name it (default TCP)",
    )


def port_and_protocol(spec: PortSpec | None, protocol: str | None) -> tuple[int, str]:
    """``--port`` and ``--protocol`` together; ValueError when they disagree."""
    if spec is None:
        raise ValueError("--port is required")
    number, named = spec
    if named and protocol and named != protocol:
        raise ValueError(f"--port {number}/{named} disagrees with --protocol {protocol}")
    return number, named or protocol or "TCP"
