"""Whatever arrives on stdin, ``cni.main`` answers with CNI error JSON: code 6
for anything it cannot decode (pathological nesting, sizes, bytes that are
not UTF-8), after the environment check (code 4), and never raises."""

from __future__ import annotations

import io
import json

import pytest

from firewall_plugin import cni, protocol

ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "c1",
    "CNI_IFNAME": "eth0",
    "CNI_NETNS": "/run/netns/pw-no-such",
    "CNI_PATH": "/opt/cni/bin",
}
UNDECODABLE: dict[str, bytes] = {
    "nested-arrays": b"[" * 50_000,
    "nested-objects": b'{"a":' * 50_000,
    "nested-in-config": b'{"cniVersion": "1.0.0", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "not-utf8": b'{"cniVersion": "1.0.0", "name": "\xff\xfe"}',
    "utf16": '{"cniVersion": "1.0.0"}'.encode("utf-16"),
    "too-large": b'{"cniVersion": "1.0.0", "x": "' + b"a" * (cni.MAX_STDIN_BYTES + 1) + b'"}',
    "huge-integer": b'{"cniVersion": "1.0.0", "x": ' + b"9" * 100_000 + b"}",
    "nul": b"\0",
}


def run_main(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], data: bytes
) -> tuple[int, dict[str, object]]:
    for name in (*ENV, protocol.LOCK_TIMEOUT_VARIABLE, "CNI_ARGS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    stdin = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="strict")
    stdout = io.StringIO()
    status = cni.main(stdin=stdin, stdout=stdout)
    return status, json.loads(stdout.getvalue())


@pytest.mark.parametrize("data", UNDECODABLE.values(), ids=UNDECODABLE.keys())
def test_undecodable_stdin_is_code_6(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    status, body = run_main(monkeypatch, ENV, data)
    assert status == 1
    assert body["code"] == protocol.CODE_DECODE, body
    assert body["details"] == "", body  # one of ours: no foreign exception leaked
    assert len(str(body["msg"])) < 300, body


def test_environment_is_checked_before_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    status, body = run_main(monkeypatch, {**ENV, "CNI_COMMAND": "FROB"}, b"\xff" * 10)
    assert (status, body["code"]) == (1, protocol.CODE_ENV)


def test_nesting_json_accepts_is_not_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nesting the decoder takes is decoded (and then judged as configuration)."""
    deep = b'{"cniVersion": "1.0.0", "x": ' + b"[" * 500 + b"]" * 500 + b"}"
    status, body = run_main(monkeypatch, ENV, deep)
    assert (status, body["code"]) == (1, protocol.CODE_CONFIG), body


@pytest.mark.parametrize("value", ["²³", "9" * 5000, "1e3", "-5", " 5", "1234567890"])
def test_lock_timeout_that_is_not_a_number_is_code_4(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    status, body = run_main(monkeypatch, {**ENV, protocol.LOCK_TIMEOUT_VARIABLE: value}, b"{}")
    assert (status, body["code"], body["details"]) == (1, protocol.CODE_ENV, ""), body


def test_error_line_on_stderr_stays_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    command = "\x1b[31m\r\n-A FORWARD -j ACCEPT\nCOMMIT\u202e"
    status, body = run_main(monkeypatch, {**ENV, "CNI_COMMAND": command}, b"{}")
    assert (status, body["code"]) == (1, protocol.CODE_ENV)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "\\x1b[31m\\r\\n-A FORWARD" in err and "\\u202e" in err
