"""Every container of the DaemonSet runs a command line the real CLI accepts.

The command line is what Kubernetes runs: the container's ``command`` (else the
image's ENTRYPOINT from the Dockerfile) followed by its ``args``, with
``$(VAR)`` references expanded from the container's env as the kubelet does.
It is parsed by the real ``podwall`` argparse configuration (the same
``configure(parser)`` functions ``podwall.__main__`` uses), and the values
that matter are checked.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pathlib
import re
import subprocess
import sys
from typing import Any

import pytest
import yaml

from podwall import __main__ as cli

ROOT = pathlib.Path(__file__).resolve().parents[2]
DAEMONSET = ROOT / "deploy" / "base" / "daemonset.yaml"
DOCKERFILE = ROOT / "Dockerfile"
NODE = "node-a"
VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(DAEMONSET.read_text())["spec"]["template"]["spec"]
    return spec


def containers() -> dict[str, dict[str, Any]]:
    spec = pod_spec()
    return {c["name"]: c for c in spec.get("initContainers", []) + spec["containers"]}


def entrypoint() -> list[str]:
    """The Dockerfile's (last) ENTRYPOINT, exec form."""
    found = [
        line.split(None, 1)[1]
        for line in DOCKERFILE.read_text().splitlines()
        if line.startswith("ENTRYPOINT ")
    ]
    assert found, "the Dockerfile has no ENTRYPOINT"
    value: list[str] = json.loads(found[-1])
    return value


def expand(arg: str, env: dict[str, str]) -> str:
    """``$(VAR)`` → its value, as the kubelet expands args (unknown ones stay)."""
    return VAR.sub(lambda m: env.get(m.group(1), m.group(0)), arg)


def container_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's env; downward-API values filled as on node ``NODE``."""
    fields = {"spec.nodeName": NODE, "metadata.namespace": "podwall-system"}
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        else:
            env[item["name"]] = fields[item["valueFrom"]["fieldRef"]["fieldPath"]]
    return env


def argv_of(container: dict[str, Any]) -> list[str]:
    env = container_env(container)
    command = container.get("command") or entrypoint()
    return [expand(str(a), env) for a in [*command, *container.get("args", [])]]


def parse(argv: list[str]) -> argparse.Namespace:
    """Parse ``podwall ...`` as ``podwall.__main__.main`` would, without running it."""
    assert argv[0] in ("podwall", "/opt/podwall/bin/podwall"), argv
    command, rest = argv[1], argv[2:]
    assert command in cli.COMMANDS, f"{command!r} is not a podwall command"
    module = importlib.import_module(cli.COMMANDS[command][0])
    parser = argparse.ArgumentParser(prog=f"podwall {command}")
    module.configure(parser)
    try:
        return parser.parse_args(rest)
    except SystemExit as exc:  # argparse reports errors by exiting
        raise AssertionError(f"podwall {command} rejects {rest}") from exc


ALL = sorted(containers())


@pytest.mark.parametrize("name", ALL, ids=ALL)
def test_every_container_command_parses(name: str) -> None:
    argv = argv_of(containers()[name])
    assert not [a for a in argv if VAR.search(a)], f"unexpanded $(VAR) in {argv}"
    parse(argv)


def test_entrypoint_is_the_console_script() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'podwall = "podwall.__main__:main"' in pyproject
    assert entrypoint() == ["/opt/podwall/bin/podwall"]


def test_agent_flags() -> None:
    agent = containers()["agent"]
    args = parse(argv_of(agent))
    assert args.node == NODE, "the agent's node name comes from the downward API"
    assert args.cni_conf_dir == "/host/etc/cni/net.d"
    ports = {p["name"]: p["containerPort"] for p in agent["ports"]}
    assert args.metrics_port == ports["metrics"] == 9101
    assert args.health_port == ports["health"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert agent[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert not args.cleanup


def test_install_flags() -> None:
    init = parse(argv_of(containers()["install-cni"]))
    watch = parse(argv_of(containers()["cni-watch"]))
    assert init.verb == watch.verb == "install"
    assert (init.bin_dir, init.conf_dir) == ("/host/opt/cni/bin", "/host/etc/cni/net.d")
    assert (watch.bin_dir, watch.conf_dir) == (init.bin_dir, init.conf_dir)
    assert init.bundle and watch.bundle, "the host may have no Python: both install the bundle"
    assert not init.watch
    assert watch.watch and watch.uninstall_on_exit == "if-daemonset-gone"
    assert watch.daemonset is None and watch.kubeconfig is None, "from env, in-cluster"
    # both write the same entry, or the sidecar would rewrite what the init wrote
    from podwall import cmd_cni

    assert cmd_cni.settings_of(init) == cmd_cni.settings_of(watch)


@pytest.mark.parametrize(
    "argv",
    [
        ["podwall", "agent", "--no-such-flag"],
        ["podwall", "cni", "install", "--bin-dir"],
        ["podwall", "cni", "install", "--backend", "nft"],
        ["podwall", "agent", "--metrics-port", "metrics"],
    ],
    ids=["unknown-flag", "missing-value", "bad-choice", "not-a-number"],
)
def test_parse_rejects_what_the_cli_rejects(argv: list[str]) -> None:
    with pytest.raises(AssertionError, match="rejects"):
        parse(argv)


@pytest.mark.parametrize("name", ALL, ids=ALL)
def test_the_installed_console_script_runs_each_command(name: str) -> None:
    """The real executable, the container's own arguments, ``--help``: exit 0."""
    script = pathlib.Path(sys.executable).parent / "podwall"
    argv = argv_of(containers()[name])
    done = subprocess.run(
        [str(script), *argv[1:], "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "usage: podwall" in done.stdout
