"""CNI network configurations and attachments, as libcni reads and builds them.

``load(source)`` accepts a conflist or a single-plugin ``.conf`` (a dict, JSON
text or a file path) and returns a ``NetworkConfig``.  ``plugin_config`` builds
the exact JSON one plugin receives on stdin: its own entry with ``name`` and
``cniVersion`` injected, ``runtimeConfig`` holding only the capabilities it
declares, and ``prevResult`` when there is one (libcni's ``buildOneConfig``).

Pure: no I/O besides reading the file ``load`` is given; runs no plugin.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from firewall_lab.cni_errors import CniRunnerError

JSON = dict[str, Any]
VALID_ATTACHMENTS_KEY = "cni.dev/valid-attachments"


class ConfigLoadError(CniRunnerError, ValueError):
    """A network configuration is not valid JSON or misses required keys."""


@dataclass(frozen=True, slots=True)
class Attachment:
    """One container's attachment to a network: what the runtime passes as
    CNI_CONTAINERID, CNI_IFNAME, CNI_NETNS and CNI_ARGS.

    ``netns`` is a path (``/run/netns/<name>``); ``capability_args`` are the
    runtime's capability arguments (``portMappings``, ``bandwidth``...), sent
    to plugins that declare the capability, as ``runtimeConfig``.
    """

    container_id: str
    ifname: str = "eth0"
    netns: str = ""
    args: Mapping[str, str] = field(default_factory=dict)
    capability_args: Mapping[str, Any] = field(default_factory=dict)

    def cni_args(self) -> str:
        """``IgnoreUnknown=1;K=V;...`` for CNI_ARGS, as kubelet sends them
        (``IgnoreUnknown`` first, unless given; the rest sorted)."""
        if not self.args:
            return ""
        pairs = dict(self.args)
        head = f"IgnoreUnknown={pairs.pop('IgnoreUnknown', '1')}"
        return ";".join([head, *(f"{key}={value}" for key, value in sorted(pairs.items()))])

    def gc_entry(self) -> JSON:
        """This attachment as a ``cni.dev/valid-attachments`` element."""
        return {"containerID": self.container_id, "ifname": self.ifname}


@dataclass(frozen=True, slots=True)
class NetworkConfig:
    """A network (conflist): name, version and the plugin entries in order."""

    name: str
    cni_version: str
    plugins: tuple[JSON, ...]
    disable_check: bool = False
    disable_gc: bool = False

    @property
    def types(self) -> list[str]:
        return [str(plugin["type"]) for plugin in self.plugins]

    def to_json(self) -> JSON:
        """The conflist document."""
        data: JSON = {
            "cniVersion": self.cni_version,
            "name": self.name,
            "plugins": [dict(plugin) for plugin in self.plugins],
        }
        if self.disable_check:
            data["disableCheck"] = True
        if self.disable_gc:
            data["disableGC"] = True
        return data

    def select(self, types: Iterable[str], *, cni_version: str | None = None) -> NetworkConfig:
        """The same network reduced to the plugins of ``types`` (order kept),
        optionally under another ``cniVersion`` (e.g. podwall alone at 1.1.0
        to exercise GC and STATUS, which the reference plugins lack)."""
        wanted = set(types)
        return NetworkConfig(
            name=self.name,
            cni_version=cni_version or self.cni_version,
            plugins=tuple(plugin for plugin in self.plugins if plugin["type"] in wanted),
            disable_check=self.disable_check,
            disable_gc=self.disable_gc,
        )


def load(source: Mapping[str, Any] | str | os.PathLike[str]) -> NetworkConfig:
    """A ``NetworkConfig`` from a conflist or ``.conf`` given as a mapping,
    as JSON text (starting with ``{``) or as a file path."""
    if isinstance(source, Mapping):
        data: Any = dict(source)
    else:
        text = str(source)
        try:
            if not text.lstrip().startswith("{"):
                with open(text) as handle:
                    text = handle.read()
            data = json.loads(text)
        except (OSError, ValueError) as exc:
            raise ConfigLoadError(f"cannot read network config {str(source)[:80]}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigLoadError("a network config must be a JSON object")
    return from_dict(data)


def from_dict(data: Mapping[str, Any]) -> NetworkConfig:
    """Validate a conflist (``plugins``) or single-plugin conf (``type``)."""
    name = data.get("name")
    version = data.get("cniVersion", "")
    if not isinstance(name, str) or not name:
        raise ConfigLoadError("network config has no name")
    if not isinstance(version, str):
        raise ConfigLoadError("cniVersion must be a string")
    if "plugins" in data:
        plugins = data["plugins"]
        if not isinstance(plugins, list) or not plugins:
            raise ConfigLoadError(f"network {name}: plugins must be a non-empty list")
    elif "type" in data:
        plugins = [{key: value for key, value in data.items() if key not in ("name",)}]
    else:
        raise ConfigLoadError(f"network {name}: neither plugins nor type")
    for plugin in plugins:
        if not isinstance(plugin, dict) or not isinstance(plugin.get("type"), str):
            raise ConfigLoadError(f"network {name}: every plugin needs a type")
    return NetworkConfig(
        name=name,
        cni_version=version,
        plugins=tuple(dict(plugin) for plugin in plugins),
        disable_check=bool(data.get("disableCheck", False)),
        disable_gc=bool(data.get("disableGC", False)),
    )


def runtime_config(plugin: Mapping[str, Any], capability_args: Mapping[str, Any]) -> JSON:
    """The capability arguments ``plugin`` declares in ``capabilities``."""
    declared = plugin.get("capabilities") or {}
    return {key: value for key, value in capability_args.items() if declared.get(key) is True}


def plugin_config(
    net: NetworkConfig,
    plugin: Mapping[str, Any],
    *,
    prev_result: Mapping[str, Any] | None = None,
    capability_args: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSON:
    """The stdin JSON of one plugin call (libcni's ``buildOneConfig``)."""
    config: JSON = dict(plugin)
    config["name"] = net.name
    config["cniVersion"] = net.cni_version
    runtime = runtime_config(plugin, capability_args or {})
    if runtime:
        config["runtimeConfig"] = runtime
    if prev_result is not None:
        config["prevResult"] = dict(prev_result)
    config.update(extra or {})
    return config


def version_key(version: str) -> tuple[int, ...]:
    """``"1.0.0"`` → ``(1, 0, 0)`` for comparisons; junk sorts lowest."""
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return (0,)


def at_least(version: str, minimum: str) -> bool:
    return version_key(version) >= version_key(minimum)


def result_ips(result: Mapping[str, Any] | None) -> list[str]:
    """Every address of a CNI result (0.4.0 and 1.x), without prefix length."""
    ips: Sequence[Any] = (result or {}).get("ips") or ()
    return [str(entry["address"]).split("/", 1)[0] for entry in ips if "address" in entry]
