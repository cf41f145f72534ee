"""Run one CNI plugin executable.

``execute`` runs a plugin as a subprocess (inside a node netns through ``ip
netns exec`` when asked) with the CNI_* environment and stdin config, and maps
every failure to the hierarchy.  It knows nothing of conflists or caching.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from firewall_lab.cni_errors import PluginError, PluginNotFoundError, PluginTimeoutError

JSON = dict[str, Any]
CNI_ENV = ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH")


def find_plugin(plugin_type: str, cni_path: Sequence[str]) -> str:
    """The executable of ``plugin_type`` on ``cni_path`` (first match)."""
    if not plugin_type or "/" in plugin_type:
        raise PluginNotFoundError(f"invalid plugin type {plugin_type!r}")
    for directory in cni_path:
        candidate = os.path.join(directory, plugin_type)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise PluginNotFoundError(f"plugin {plugin_type!r} not found in {':'.join(cni_path)}")


@dataclass(frozen=True, slots=True)
class Invocation:
    """Everything one plugin call needs besides its stdin config."""

    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: str = ""


def environment(invocation: Invocation, cni_path: Sequence[str]) -> dict[str, str]:
    """The process environment (ours, minus stale CNI_*, plus this call's)."""
    env = {key: value for key, value in os.environ.items() if key not in CNI_ENV}
    env.update(
        CNI_COMMAND=invocation.command,
        CNI_CONTAINERID=invocation.container_id,
        CNI_NETNS=invocation.netns,
        CNI_IFNAME=invocation.ifname,
        CNI_ARGS=invocation.args,
        CNI_PATH=":".join(cni_path),
    )
    return env


def parse_error(
    *, plugin: str, command: str, done: subprocess.CompletedProcess[str]
) -> PluginError:
    """Map a failed run to PluginError, from the CNI error JSON on stdout
    (or stderr, which some plugins use) when there is one."""
    for stream in (done.stdout, done.stderr):
        try:
            data = json.loads(stream)
        except ValueError:
            continue
        if isinstance(data, dict) and "code" in data:
            return PluginError(
                plugin=plugin,
                command=command,
                code=int(data["code"]),
                msg=str(data.get("msg", "")),
                details=str(data.get("details", "")),
                stderr=done.stderr,
            )
    text = (done.stderr.strip() or done.stdout.strip() or "no output")[-2000:]
    return PluginError(
        plugin=plugin,
        command=command,
        code=None,
        msg=f"exit {done.returncode}: {text}",
        stderr=done.stderr,
    )


def execute(
    *,
    plugin: str,
    invocation: Invocation,
    config: Mapping[str, Any] | None,
    cni_path: Sequence[str],
    exec_netns: str | None = None,
    timeout: float = 30.0,
) -> JSON | None:
    """Run ``plugin`` (a type name, looked up on ``cni_path``) and return its
    parsed stdout JSON (None when it printed nothing, as DEL may)."""
    executable = find_plugin(plugin, cni_path)
    argv = [executable] if exec_netns is None else ["ip", "netns", "exec", exec_netns, executable]
    stdin = json.dumps(config) if config is not None else ""
    try:
        done = subprocess.run(
            argv,
            input=stdin,
            capture_output=True,
            text=True,
            env=environment(invocation, cni_path),
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise PluginTimeoutError(
            plugin=plugin, command=invocation.command, code=None, msg=f"no answer in {timeout}s"
        ) from exc
    except OSError as exc:
        raise PluginNotFoundError(f"cannot run {executable}: {exc.strerror}") from exc
    if done.returncode != 0:
        raise parse_error(plugin=plugin, command=invocation.command, done=done)
    if not done.stdout.strip():
        return None
    try:
        data = json.loads(done.stdout)
    except ValueError as exc:
        raise PluginError(
            plugin=plugin,
            command=invocation.command,
            code=None,
            msg=f"output is not JSON: {done.stdout[:200]!r}",
            stderr=done.stderr,
        ) from exc
    if not isinstance(data, dict):
        raise PluginError(
            plugin=plugin, command=invocation.command, code=None, msg="output is not an object"
        )
    return data
