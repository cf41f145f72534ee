"""The DaemonSet's containers, run with podman the way a kubelet would run them.

Everything comes from ``deploy/base/daemonset.yaml``: the args, the env (field
references resolved as the kubelet would), the security context (read-only
root, dropped capabilities, no privilege escalation) and the volume mounts.
A ``Host`` maps each hostPath volume to this machine's folder that plays the
host's (a lab node's CNI folders, state and run folders); volumes the manifest
mounts at their host path (state, run, the xtables lock) are mounted at the
stand-in's path, which is what the node's conflist entry names.  Containers
join the node's network namespace (``hostNetwork: true``).

Test support only.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from firewall_lab import netns
from firewall_plugin import conflist
from podwall.cmd_cni import SETTING_FLAGS

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "deploy" / "base" / "daemonset.yaml"
IMAGE = os.environ.get("PODWALL_TEST_IMAGE", "")
BASE_IMAGE = os.environ.get("PODWALL_TEST_BASE_IMAGE", "")
CONTAINERS_CONF = os.environ.get(
    "CONTAINERS_CONF", str(ROOT / "deploy" / "image" / "containers.conf")
)
NAMESPACE = "podwall-system"
#: the pod's fields the manifest's env refers to
FIELDS = {"metadata.namespace": NAMESPACE}


def podman(
    *args: str, check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONTAINERS_CONF": CONTAINERS_CONF}
    done = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: {done.stdout}\n{done.stderr}")
    return done


def nsenter(*args: str, check: bool = True, containers_conf: str = "") -> str:
    """``nsenter ARGS`` (e.g. podman in a node's network namespace); its stdout,
    or "ok"/"failed" when ``check`` is off."""
    env = {**os.environ, "CONTAINERS_CONF": containers_conf or CONTAINERS_CONF}
    done = subprocess.run(
        ["nsenter", *args], capture_output=True, text=True, timeout=300, env=env, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"nsenter {' '.join(args)}: {done.stdout}\n{done.stderr}")
    if not check:
        return "ok" if done.returncode == 0 else "failed"
    return done.stdout


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(MANIFEST.read_text())["spec"]["template"]["spec"]
    return spec


def container(name: str) -> dict[str, Any]:
    spec = pod_spec()
    for found in [*spec.get("initContainers", []), *spec["containers"]]:
        if found["name"] == name:
            result: dict[str, Any] = found
            return result
    raise AssertionError(f"no container {name} in {MANIFEST}")


@dataclass
class Host:
    """A node as the DaemonSet sees it: its name, netns and hostPath stand-ins."""

    node: str
    netns: str
    volumes: dict[str, str]
    kubeconfig: str = ""
    #: podwall settings flags the node's conflist entry has (given to both installers)
    settings: list[str] = field(default_factory=list)

    @classmethod
    def of_lab_node(cls, node: str, node_netns: str, node_dir: str) -> Host:
        """A lab node (``firewall_lab.lab.layout``): its folders play the host's."""
        conf_dir = os.path.join(node_dir, "net.d")
        volumes = {
            "cni-bin": os.path.join(node_dir, "bin"),
            "cni-conf": conf_dir,
            "state": os.path.join(node_dir, "state"),
            "run": os.path.join(node_dir, "run"),
        }
        return cls(node, node_netns, {**machine_volumes(), **volumes},
                   os.path.join(node_dir, "kubeconfig"), entry_flags(conf_dir))  # fmt: skip


def machine_volumes() -> dict[str, str]:
    """Volumes that are this machine's own (read-only ones, the shared lock)."""
    return {"xtables-lock": "/run/xtables.lock", "host-usr": "/usr", "host-lib": "/lib"}


def entry_flags(conf_dir: str) -> list[str]:
    """The install flags that reproduce the podwall entry of ``conf_dir``."""
    entry = conflist.read_entry(conf_dir) or {}
    flags: list[str] = []
    for dest, key in SETTING_FLAGS.items():
        if key in entry and key != "ensureBridgeNetfilter":
            flags += [f"--{dest.replace('_', '-')}", str(entry[key])]
    return flags


def run_argv(
    name: str,
    host: Host,
    image: str,
    *,
    container_name: str,
    detach: bool,
    extra: tuple[str, ...] = (),
    mounts: tuple[str, ...] = (),
) -> list[str]:
    """``podman run`` arguments for the manifest's container ``name`` on ``host``."""
    spec = container(name)
    argv = ["run", "--name", container_name, "--network", f"ns:{netns.path(host.netns)}"]
    argv += ["-d"] if detach else ["--rm"]
    argv += [*_security(spec.get("securityContext") or {}), *_mounts(spec, host), *_env(spec, host)]
    for mount in mounts:
        argv += ["-v", mount]
    args = [str(arg).replace("$(NODE_NAME)", host.node) for arg in spec.get("args", [])]
    return [*argv, image, *args, *extra]


def _security(context: dict[str, Any]) -> list[str]:
    argv = [f"--user={context.get('runAsUser', 0)}"]
    if context.get("readOnlyRootFilesystem"):
        argv.append("--read-only")
    capabilities = context.get("capabilities") or {}
    if "ALL" in capabilities.get("drop", []):
        argv.append("--cap-drop=all")
    argv += [f"--cap-add={cap}" for cap in capabilities.get("add", [])]
    if context.get("allowPrivilegeEscalation") is False:
        argv.append("--security-opt=no-new-privileges")
    return argv


def _mounts(spec: dict[str, Any], host: Host) -> list[str]:
    host_paths = {
        v["name"]: v["hostPath"]["path"] for v in pod_spec()["volumes"] if "hostPath" in v
    }
    argv: list[str] = []
    for mount in spec.get("volumeMounts", []):
        name, target = mount["name"], mount["mountPath"]
        if name not in host_paths:  # the memory emptyDir
            argv += ["--tmpfs", target]
            continue
        source = host.volumes[name]
        if target == host_paths[name]:
            target = source  # mounted at its host path: the stand-in's path
        argv += ["-v", f"{source}:{target}{':ro' if mount.get('readOnly') else ''}"]
    return argv


def _env(spec: dict[str, Any], host: Host) -> list[str]:
    argv: list[str] = []
    for item in spec.get("env", []):
        if "value" in item:
            value = str(item["value"])
        else:
            path = item["valueFrom"]["fieldRef"]["fieldPath"]
            value = host.node if path == "spec.nodeName" else FIELDS[path]
        argv += ["-e", f"{item['name']}={value}"]
    return argv
