"""``spawn.run``: the plugin's subprocess stand-in (runs coreutils only)."""

from __future__ import annotations

import pytest

from firewall_plugin import spawn


@pytest.mark.parametrize(
    ("argv", "text", "expected"),
    [
        (["cat"], "", spawn.Completed(0, "", "")),
        (["cat"], "*filter\nCOMMIT\n", spawn.Completed(0, "*filter\nCOMMIT\n", "")),
        (["sh", "-c", "echo out; echo err >&2; exit 3"], "", spawn.Completed(3, "out\n", "err\n")),
        (["sh", "-c", "kill -TERM $$"], "", spawn.Completed(-15, "", "")),
        (["cat"], "podwall: ünïcode\n", spawn.Completed(0, "podwall: ünïcode\n", "")),
    ],
    ids=["empty", "echo", "exit-status-and-stderr", "killed", "utf-8"],
)
def test_run(argv: list[str], text: str, expected: spawn.Completed) -> None:
    assert spawn.run(argv, text) == expected


def test_large_input_and_output_do_not_block() -> None:
    text = "-A PODWALL-X -j DROP\n" * 50_000  # ~1 MB, far beyond a pipe's buffer
    done = spawn.run(["sh", "-c", "cat; cat /dev/null >&2; head -c 200000 /dev/zero >&2"], text)
    assert (done.returncode, done.stdout == text, len(done.stderr)) == (0, True, 200_000)


def test_missing_program_raises_oserror() -> None:
    with pytest.raises(FileNotFoundError):
        spawn.run(["podwall-no-such-program"])
