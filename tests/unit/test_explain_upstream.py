"""``podwall explain`` with the upstream kinds and Nodes in its files: the
deciding rule is named with its kind, nodes peers use the Nodes' addresses."""

from __future__ import annotations

import pytest

from podwall.__main__ import main
from tests.unit.pw_policy import FIXTURES

FILES = ["-f", str(FIXTURES / "cluster-basic.yaml"), str(FIXTURES / "explain-upstream.yaml")]


def explain(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["explain", *FILES, *args])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize(
    ("src", "dst", "port", "verdict", "line"),
    [
        (
            "y/a",
            "x/h",
            "22/TCP",
            "DENIED",
            "egress of y/a: denied: ClusterNetworkPolicy no-node-ssh denies x/h "
            "(rule ssh-to-nodes, Admin tier)",
        ),
        (
            "y/a",
            "x/a",
            "80/TCP",
            "ALLOWED",
            "ingress of x/a: allowed: AdminNetworkPolicy y-web allows y/a "
            "(rule from-y, Admin tier)",
        ),
        (
            "z/c",
            "x/a",
            "80/TCP",
            "DENIED",
            "ingress of x/a: denied: BaselineAdminNetworkPolicy default denies z/c "
            "(rule deny-rest, Baseline tier)",
        ),
    ],
    ids=["cnp-nodes-peer", "anp-named-port", "banp"],
)
def test_deciding_rule_names_the_kind(
    capsys: pytest.CaptureFixture[str], src: str, dst: str, port: str, verdict: str, line: str
) -> None:
    status, out, err = explain(capsys, "--from", src, "--to", dst, "--port", port)
    assert status == (1 if verdict == "DENIED" else 0) and err == ""
    head = out.splitlines()[0]
    assert head.startswith(f"{src} -> {dst} {port}") and head.endswith(f": {verdict}"), out
    assert line in out, out
