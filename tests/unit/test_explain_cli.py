"""``podwall explain`` on fixture files: pair verdicts, matrix JSON and table,
and clear errors with exit status 2 (arguments) or 1 (input files)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from podwall.__main__ import main
from tests.unit.pw_policy import FIXTURES

FILES = ["-f", str(FIXTURES / "cluster-basic.yaml"), str(FIXTURES / "explain-policies.yaml")]
PODS = ["x/a", "x/b", "x/h", "x/noip", "y/a", "y/b", "z/c"]


def explain(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["explain", *FILES, *args])
    out, err = capsys.readouterr()
    return status, out, err


def test_matrix_json_shape(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = explain(capsys, "--matrix", "--port", "80", "--protocol", "TCP", "-o", "json")
    assert status == 0
    data = json.loads(out)
    assert list(data) == ["port", "protocol", "pods", "reachable"]
    assert (data["port"], data["protocol"], data["pods"]) == (80, "TCP", PODS)
    assert all(list(data["reachable"][src]) == PODS for src in PODS)
    into_xa = {src: data["reachable"][src]["x/a"] for src in PODS}
    assert into_xa == {
        "x/a": True,  # itself
        "x/b": False,  # not from y
        "x/h": True,  # hostNetwork pod on x/a's node
        "x/noip": False,
        "y/a": True,
        "y/b": False,  # the Admin Deny beats the policy's allow
        "z/c": False,
    }


def test_matrix_table(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = explain(capsys, "--matrix", "--port", "80/TCP")
    assert status == 0
    lines = out.splitlines()
    assert lines[0].startswith("port 80/TCP")
    row = next(line for line in lines if line.split()[1:2] == ["y/b"])
    assert row.split()[2:] == ["--", "--", "ok", "--", "--", "ok", "--"]  # Admin Deny of tier=web


def test_pair_text_names_deciding_rules(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = explain(capsys, "--from", "y/b", "--to", "x/a", "--port", "80/TCP")
    assert status == 0
    assert out.splitlines()[0] == "y/b -> x/a 80/TCP: DENIED"
    assert "egress of y/b: allowed" in out
    assert "ingress of x/a: DENIED: deny by FirewallRule no-web ingress deny-web" in out
    assert "netpol:    not reached" in out


def test_pair_json(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = explain(capsys, "--from", "y/a", "--to", "x/a", "--port", "80", "-o", "json")
    data = json.loads(out)
    assert (status, data["allowed"]) == (0, True)
    tiers = [(t["tier"], t["outcome"], t["rule"]) for t in data["ingress"]["tiers"]]
    assert tiers == [
        ("admin", "no-match", None),
        ("netpol", "allow", "NetworkPolicy x/from-y ingress[0]"),
        ("baseline", "not-reached", None),
    ]


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["--from", "x/zz", "--to", "x/a", "--port", "80"], 2, "--from x/zz: no such pod"),
        (["--from", "x/a", "--to", "x/b"], 2, "--port is required"),
        (["--matrix", "--port", "80/ICMP"], 2, "protocol must be one of"),
        (["--matrix", "--port", "70000"], 2, "not a port number"),
        (["--matrix", "--port", "53/UDP", "--protocol", "TCP"], 2, "disagrees"),
        (["--port", "80"], 2, "--from NS/POD is required"),
    ],
    ids=["unknown-pod", "no-port", "bad-protocol", "port-range", "protocol-clash", "no-from"],
)
def test_usage_errors(
    capsys: pytest.CaptureFixture[str], args: list[str], status: int, message: str
) -> None:
    got, out, err = explain(capsys, *args)
    assert (got, out) == (status, "")
    assert message in err and "Traceback" not in err


def test_unreadable_input_exits_1_without_traceback(tmp_path: object) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "podwall",
            "explain",
            "-f",
            "/nonexistent.yaml",
            "--matrix",
            "--port",
            "80",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "/nonexistent.yaml: no such file" in done.stderr and "Traceback" not in done.stderr


def test_problems_go_to_stderr(capsys: pytest.CaptureFixture[str], tmp_path: object) -> None:
    import pathlib

    broken = pathlib.Path(str(tmp_path)) / "broken.yaml"
    broken.write_text(
        "kind: NetworkPolicy\nmetadata: {namespace: x, name: bad}\n"
        "spec: {podSelector: {}, ingress: [{ports: [{port: 1, endPort: 0}]}]}\n"
    )
    status = main(["explain", *FILES, "-f", str(broken), "--matrix", "--port", "80", "-o", "json"])
    out, err = capsys.readouterr()
    assert status == 0 and json.loads(out)["reachable"]["y/a"]["x/b"] is False
    assert "error: NetworkPolicy x/bad" in err and "failing closed" in err
