"""``podwall explain`` on fixture files: pair verdicts per family, IP and CIDR
endpoints, matrix JSON and table, standard input, and exit statuses 0 allowed,
1 denied, 2 usage errors and unreadable input (never a traceback)."""

from __future__ import annotations

import io
import json
import pathlib
import subprocess
import sys

import pytest

from podwall.__main__ import main
from tests.unit.pw_policy import FIXTURES

BASIC = str(FIXTURES / "cluster-basic.yaml")
FILES = ["-f", BASIC, str(FIXTURES / "explain-policies.yaml")]
PODS = ["x/a", "x/b", "x/h", "x/noip", "y/a", "y/b", "z/c"]
METADATA = str(
    pathlib.Path(__file__).parents[2] / "deploy/examples/firewallrule-deny-metadata.yaml"
)


def explain(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["explain", *FILES, *args])
    out, err = capsys.readouterr()
    return status, out, err


def test_matrix_json_per_family(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = explain(capsys, "--matrix", "--port", "80", "--protocol", "TCP", "-o", "json")
    assert status == 0
    found = json.loads(out)
    assert [m["family"] for m in found] == ["ipv4", "ipv6"]  # the pods are dual-stack
    data = found[0]
    assert list(data) == ["port", "protocol", "pods", "reachable", "family"]
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
    assert found[1]["reachable"] == data["reachable"]  # no ipBlock: the families agree


def test_matrix_one_family_keeps_the_probe_shape(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = explain(
        capsys, "--matrix", "--port", "80/TCP", "--family", "ipv6", "-o", "json"
    )
    data = json.loads(out)
    assert (status, data["family"], data["pods"]) == (0, "ipv6", PODS)


def test_matrix_table(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = explain(capsys, "--matrix", "--port", "80/TCP", "--family", "ipv4")
    assert status == 0
    lines = out.splitlines()
    assert lines[0].startswith("port 80/TCP ipv4")
    row = next(line for line in lines if line.split()[1:2] == ["y/b"])
    assert row.split()[2:] == ["--", "--", "ok", "--", "--", "ok", "--"]  # Admin Deny of tier=web


def test_denied_pair_exits_1_and_names_the_deciding_rule(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, _ = explain(capsys, "--from", "y/b", "--to", "x/a", "--port", "80/TCP")
    assert status == 1
    assert out.splitlines()[0] == "y/b -> x/a 80/TCP: DENIED"  # y/b has IPv4 only
    assert "denied: FirewallRule no-web denies y/b (rule deny-web, Admin tier)" in out
    assert "egress of y/b: allowed: no policy selects y/b for egress" in out
    assert "netpol:    not reached" in out


def test_isolation_reads_as_a_sentence(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = explain(capsys, "--from", "x/b", "--to", "x/a", "--port", "80")
    assert status == 1
    assert (
        "denied: x/a is isolated for ingress by NetworkPolicy x/from-y, and no rule allows x/b"
    ) in out


def test_dual_stack_pair_is_answered_per_family(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = explain(capsys, "--from", "y/a", "--to", "x/a", "--port", "80")
    heads = [line for line in out.splitlines() if "->" in line]
    assert (status, heads) == (
        0,
        ["y/a -> x/a 80/TCP (ipv4): ALLOWED", "y/a -> x/a 80/TCP (ipv6): ALLOWED"],
    )


def test_allowed_pair_json(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = explain(
        capsys, "--from", "y/a", "--to", "x/a", "--port", "80", "--family", "ipv4", "-o", "json"
    )
    data = json.loads(out)
    assert (status, data["allowed"], len(data["verdicts"])) == (0, True, 1)
    verdict = data["verdicts"][0]
    tiers = [(t["tier"], t["outcome"], t["rule"]) for t in verdict["ingress"]["tiers"]]
    assert tiers == [
        ("admin", "no-match", None),
        ("netpol", "allow", "NetworkPolicy x/from-y ingress[0]"),
        ("baseline", "not-reached", None),
    ]
    assert verdict["reason"] == "allowed: NetworkPolicy x/from-y allows y/a (ingress[0])"


def test_pod_ip_is_the_pod(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = explain(capsys, "--from", "10.0.2.1", "--to", "x/a", "--port", "80")
    assert status == 0
    assert "note: 10.0.2.1 is pod y/a" in out


def test_metadata_example_explains_ip_and_cidr(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["explain", "-f", BASIC, METADATA, "--from", "y/a", "--port", "80"]
    assert main([*args, "--to", "169.254.169.254"]) == 1
    out = capsys.readouterr().out
    assert "denied: FirewallRule deny-cloud-metadata denies 169.254.169.254" in out
    assert main([*args, "--to", "fd00:ec2::254"]) == 1
    assert "fd00:ec2::254 80/TCP: DENIED" in capsys.readouterr().out
    assert main([*args, "--to", "169.254.0.0/16", "-o", "json"]) == 1
    pieces = [(v["to"], v["allowed"]) for v in json.loads(capsys.readouterr().out)["verdicts"]]
    assert pieces == [
        ("169.254.0.0-169.254.169.253", True),
        ("169.254.169.254", False),
        ("169.254.169.255-169.254.255.255", True),
    ]
    assert main([*args, "--to", "192.168.0.0/16"]) == 0  # no rule names it


def test_ipblock_answers_in_the_pods_family(
    capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    """An IPv6-only cluster: the ipBlock is IPv6, and so is the answer (no
    silent IPv4 evaluation)."""
    cluster = tmp_path / "v6.yaml"
    cluster.write_text(
        "kind: Pod\nmetadata: {namespace: x, name: a, labels: {app: a}}\n"
        "status: {podIPs: [{ip: 'fd00::a'}]}\n---\n"
        "kind: Pod\nmetadata: {namespace: y, name: b}\n"
        "status: {podIPs: [{ip: 'fd00::b'}]}\n---\n"
        "kind: NetworkPolicy\nmetadata: {namespace: x, name: v6}\n"
        "spec: {podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 'fd00::b/128'}}]}]}\n"
    )
    status = main(["explain", "-f", str(cluster), "--from", "y/b", "--to", "x/a", "--port", "80"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "(ipv6)" not in out  # one family: not named in the head
    assert (
        main(
            [
                "explain",
                "-f",
                str(cluster),
                "--from",
                "y/b",
                "--to",
                "x/a",
                "--port",
                "80",
                "--family",
                "ipv4",
            ]
        )
        == 1
    )


def test_standard_input(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(pathlib.Path(BASIC).read_text()))
    status = main(["explain", "-f", "-", "--from", "x/b", "--to", "x/a", "--port", "80"])
    assert status == 0 and "ALLOWED" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "x/zz", "--to", "x/a", "--port", "80"], "--from x/zz: no such pod"),
        (["--from", "x/a", "--to", "x/b"], "--port is required"),
        (["--from", "nope", "--to", "x/b", "--port", "80"], "not NS/NAME, an IP address or a CIDR"),
        (["--from", "1.2.3.4", "--to", "10.0.0.0/8", "--port", "80"], "one end must be a pod"),
        (["--from", "x/a", "--to", "fd00::9", "--port", "80", "--family", "ipv4"], "is ipv6"),
        (["--matrix", "--port", "53/UDP", "--protocol", "TCP"], "disagrees"),
        (["--port", "80"], "--from ENDPOINT is required"),
        (["--matrix", "--port", "80", "--kubeconfig", "/k"], "pick one"),
    ],
    ids=[
        "unknown-pod",
        "no-port",
        "bad-endpoint",
        "no-pod",
        "family-clash",
        "protocol-clash",
        "no-from",
        "files-and-cluster",
    ],
)
def test_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    got, out, err = explain(capsys, *args)
    assert (got, out) == (2, "")
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("port", "message"), [("80/ICMP", "protocol must be one of"), ("70000", "not a port number")]
)
def test_bad_port_is_an_argparse_error(
    capsys: pytest.CaptureFixture[str], port: str, message: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["explain", *FILES, "--matrix", "--port", port])
    assert exited.value.code == 2 and message in capsys.readouterr().err


def test_unreadable_input_exits_2_without_traceback() -> None:
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
    assert done.returncode == 2
    assert "/nonexistent.yaml: no such file" in done.stderr and "Traceback" not in done.stderr


def test_no_cluster_exits_2(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert main(["explain", "--matrix", "--port", "80"]) == 2
    bad = tmp_path / "kubeconfig"
    bad.write_text("apiVersion: v1\nkind: Config\ncontexts: []\n")
    assert main(["explain", "--kubeconfig", str(bad), "--matrix", "--port", "80"]) == 2


def test_problems_go_to_stderr(capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "kind: NetworkPolicy\nmetadata: {namespace: x, name: bad}\n"
        "spec: {podSelector: {}, ingress: [{ports: [{port: 1, endPort: 0}]}]}\n"
    )
    status = main(
        [
            "explain",
            *FILES,
            "-f",
            str(broken),
            "--matrix",
            "--port",
            "80",
            "--family",
            "ipv4",
            "-o",
            "json",
        ]
    )
    out, err = capsys.readouterr()
    assert status == 0 and json.loads(out)["reachable"]["y/a"]["x/b"] is False
    assert "error: NetworkPolicy x/bad" in err and "failing closed" in err


@pytest.mark.parametrize(
    ("policy", "text"),
    [
        ("NetworkPolicy a/x", "NetworkPolicy a/x"),
        ("NetworkPolicy a/x, NetworkPolicy a/y", "NetworkPolicies a/x and a/y"),
        (
            "NetworkPolicy a/x, NetworkPolicy a/y, NetworkPolicy a/z",
            "NetworkPolicies a/x, a/y and a/z",
        ),
        (
            "FirewallRule r (invalid), NetworkPolicy a/x",
            "FirewallRule r (invalid) and NetworkPolicy a/x",
        ),
    ],
)
def test_isolating_policies_read_as_a_list(policy: str, text: str) -> None:
    from firewall_operator import explain as words

    assert words.isolators(policy) == text
