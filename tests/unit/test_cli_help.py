"""Every flag of every ``podwall`` subcommand (and sub-subcommand) has help
text, ``podwall --version`` answers, and ``--port P[/PROTO]`` is one syntax."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator

import pytest

from podwall import __main__ as entry
from podwall import cli


def parsers(
    name: str, parser: argparse.ArgumentParser
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for verb, sub in action.choices.items():
                yield from parsers(f"{name} {verb}", sub)


def undocumented(parser: argparse.ArgumentParser) -> list[str]:
    return [
        "/".join(action.option_strings) or action.dest
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction | argparse._SubParsersAction)
        and (not action.help or action.help == argparse.SUPPRESS)
    ]


@pytest.mark.parametrize("command", sorted(entry.COMMANDS))
def test_every_flag_has_help(command: str) -> None:
    found = {name: undocumented(p) for name, p in parsers(command, entry.command_parser(command))}
    assert {name: flags for name, flags in found.items() if flags} == {}


def test_top_level_flags_have_help() -> None:
    assert undocumented(entry.top_parser()) == []


def test_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "podwall", "--version"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0
    assert done.stdout.startswith("podwall ") and done.stdout.split()[1][0].isdigit()


@pytest.mark.parametrize(
    ("text", "want"), [("80", (80, None)), ("80/TCP", (80, "TCP")), ("53/udp", (53, "UDP"))]
)
def test_port_syntax(text: str, want: tuple[int, str | None]) -> None:
    assert cli.port(text) == want


@pytest.mark.parametrize("text", ["0", "65536", "http", "80/ICMP", "80/"])
def test_bad_ports(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        cli.port(text)


@pytest.mark.parametrize("command", [["lab", "probe", "--dir", "d"], ["explain", "--matrix"]])
def test_port_with_protocol_parses_everywhere(command: list[str]) -> None:
    args = entry.command_parser(command[0]).parse_args([*command[1:], "--port", "80/TCP"])
    assert cli.port_and_protocol(args.port, args.protocol) == (80, "TCP")
