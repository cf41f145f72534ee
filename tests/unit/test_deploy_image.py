"""The Dockerfile, the DaemonSet and the code agree on paths (read, not built).

The image is built and run by the opt-in tier ``make test-image``
(``tests/image``); these quick checks run in every ``make test``: what the
Dockerfile copies and installs, where the virtualenv and the entry point are,
and that every path the DaemonSet mounts is the one the plugin, the locks and
the installer use.
"""

from __future__ import annotations

import pathlib
import re
import tomllib
from typing import Any

import yaml

from firewall_plugin import config, locking

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
DOCKERIGNORE = (ROOT / ".dockerignore").read_text().split("\n")
VENV = "/opt/podwall"


def instructions(keyword: str) -> list[str]:
    """The arguments of every ``keyword`` instruction, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [
        line.split(None, 1)[1] for line in joined.splitlines() if line.startswith(keyword + " ")
    ]


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(
        (ROOT / "deploy" / "base" / "daemonset.yaml").read_text()
    )["spec"]["template"]["spec"]
    return spec


def all_containers() -> list[dict[str, Any]]:
    spec = pod_spec()
    return [*spec.get("initContainers", []), *spec["containers"]]


def host_paths() -> dict[str, dict[str, Any]]:
    return {v["name"]: v["hostPath"] for v in pod_spec()["volumes"] if "hostPath" in v}


def mounts(container: str) -> dict[str, str]:
    found = [c for c in all_containers() if c["name"] == container]
    return {m["name"]: m["mountPath"] for m in found[0]["volumeMounts"]}


def test_both_stages_use_one_base_with_a_supported_python() -> None:
    froms = instructions("FROM")
    assert [f.split()[0] for f in froms] == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"], froms
    (arg,) = [a for a in instructions("ARG") if a.startswith("PYTHON_IMAGE=")]
    image = arg.split("=", 1)[1]
    match = re.fullmatch(r"python:3\.(\d+)-slim-bookworm", image)
    assert match, f"base {image}: the bundle copies the official image's own interpreter"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["requires-python"] == ">=3.11"
    assert int(match.group(1)) >= 11


def test_virtualenv_entrypoint_and_tools() -> None:
    runs = " ".join(instructions("RUN"))
    assert f"python -m venv {VENV}" in runs
    assert re.search(rf"{VENV}/bin/pip install (--no-deps )?\.", runs), runs
    assert f"--from=build {VENV} {VENV}" in " ".join(instructions("COPY"))
    assert instructions("ENTRYPOINT") == [f'["{VENV}/bin/podwall"]']
    assert re.search(r"apt-get install [^&]*\biptables\b[^&]*\bipset\b", runs), runs
    for check in ("iptables-nft --version", "iptables-legacy --version", "ipset --help"):
        assert check in runs, f"the build should fail when {check.split()[0]} is missing"
    env = " ".join(instructions("ENV"))
    assert f"PATH={VENV}/bin:" in env
    assert "PYTHONDONTWRITEBYTECODE=1" in env, "the root filesystem is read-only at run time"


def test_build_context_holds_every_package() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    ]
    copied = " ".join(instructions("COPY"))
    for name in [*packages, "pyproject.toml", "README.md"]:
        assert name in copied, f"the Dockerfile does not copy {name}"
        allowed = f"!{name}/" if (ROOT / name).is_dir() else f"!{name}"
        assert allowed in DOCKERIGNORE, f".dockerignore keeps {name} out of the build context"
    assert DOCKERIGNORE[0].startswith("#") and "*" in DOCKERIGNORE


def test_host_paths_match_the_plugin_and_the_locks() -> None:
    paths = host_paths()
    defaults = config.PluginConfig(name="n", cni_version="1.0.0")
    assert paths["state"] == {"path": defaults.state_dir, "type": "DirectoryOrCreate"}
    assert paths["run"] == {"path": defaults.run_dir, "type": "DirectoryOrCreate"}
    assert paths["xtables-lock"] == {"path": locking.XTABLES_LOCK, "type": "FileOrCreate"}
    assert paths["cni-bin"]["path"] == "/opt/cni/bin"
    assert paths["cni-conf"]["path"] == "/etc/cni/net.d"


def test_agent_sees_state_run_and_lock_at_their_host_paths() -> None:
    """The conflist entry names these folders as the host sees them."""
    agent = mounts("agent")
    for volume in ("state", "run", "xtables-lock"):
        assert agent[volume] == host_paths()[volume]["path"], volume
    assert agent["cni-conf"] == "/host/etc/cni/net.d"
    assert "cni-bin" not in agent, "the agent never writes the CNI bin folder"


def test_installers_write_the_host_folders_under_host() -> None:
    for name in ("install-cni", "cni-watch"):
        seen = mounts(name)
        assert seen["cni-bin"] == "/host/opt/cni/bin", name
        assert seen["cni-conf"] == "/host/etc/cni/net.d", name
        assert not {"state", "run", "xtables-lock"} & set(seen), f"{name} mounts too much"


def test_one_image_read_only_root_and_tmp_everywhere() -> None:
    assert {c["image"] for c in all_containers()} == {"podwall"}
    for container in all_containers():
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True, container["name"]
        assert security["allowPrivilegeEscalation"] is False, container["name"]
        assert mounts(container["name"])["tmp"] == "/tmp", container["name"]
