"""The node's CNI network config files as the runtime reads them: which file is
used, and podwall's entry in it.

The primary config is the first file by name among ``*.conf``, ``*.conflist``
and ``*.json`` in the conf dir, as libcni's ``ConfFiles`` + sort give it to
kubelet and containerd.  ``read_entry`` returns podwall's entry of that file:
the agent takes its settings (backend, folders, defaults) from it, the lab
reads it, and the installer (``firewall_install.conf``) rewrites the same file
with the same rules, so all three agree on which file counts.

Read-only and pure apart from reading the folder: no writes, no kernel access.
Not on the CNI plugin's path (the plugin gets its entry on stdin), so the host
bundle does not carry it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from firewall_plugin.errors import PodwallError

PLUGIN_TYPE = "podwall"
CNI_EXTENSIONS = (".conf", ".conflist", ".json")

Network = dict[str, Any]


class ConflistError(PodwallError):
    """The conf folder or its primary file cannot be read or has the wrong shape."""


def conf_names(conf_dir: str) -> list[str]:
    """Names of the CNI config files in ``conf_dir``, sorted like libcni does."""
    try:
        entries = list(os.scandir(conf_dir))
    except FileNotFoundError as exc:
        raise ConflistError(f"CNI conf dir {conf_dir} does not exist") from exc
    except OSError as exc:
        raise ConflistError(f"cannot list CNI conf dir {conf_dir}: {exc}") from exc
    return sorted(e.name for e in entries if e.name.endswith(CNI_EXTENSIONS) and not e.is_dir())


def primary_name(conf_dir: str) -> str:
    """Name of the config file the runtime uses: the first CNI file by name."""
    names = conf_names(conf_dir)
    if not names:
        raise ConflistError(
            f"no CNI config in {conf_dir} (*.conf, *.conflist, *.json): "
            "install the primary CNI first, podwall chains after it"
        )
    return names[0]


def parse_network(text: str, *, origin: str) -> Network:
    """A conflist (or single-plugin conf) checked for the shape we rely on."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConflistError(f"{origin} is not valid JSON ({exc}); not touching it") from exc
    if not isinstance(data, dict):
        raise ConflistError(f"{origin} does not hold a JSON object; not touching it")
    if "plugins" in data:
        plugins = data["plugins"]
        if not isinstance(plugins, list) or not plugins:
            raise ConflistError(f"{origin}: 'plugins' is not a non-empty list; not touching it")
        for index, plugin in enumerate(plugins):
            if not isinstance(plugin, dict) or not isinstance(plugin.get("type"), str):
                raise ConflistError(f"{origin}: plugins[{index}] has no 'type'; not touching it")
    elif not isinstance(data.get("type"), str):
        raise ConflistError(f"{origin} has neither 'plugins' nor 'type'; not touching it")
    return data


def as_conflist(network: Network) -> Network:
    """``network`` as a conflist: a single conf becomes the only plugin of a list."""
    if "plugins" in network:
        return network
    head: Network = {key: network[key] for key in ("cniVersion", "name") if key in network}
    plugin = {key: value for key, value in network.items() if key not in head}
    return {**head, "plugins": [plugin]}


def is_podwall(plugin: Mapping[str, Any]) -> bool:
    return plugin.get("type") == PLUGIN_TYPE


def podwall_entries(conflist: Network) -> list[Network]:
    return [plugin for plugin in conflist.get("plugins", []) if is_podwall(plugin)]


def read_entry(conf_dir: str) -> Network | None:
    """The podwall entry of the primary config, or None when it has none."""
    path = os.path.join(conf_dir, primary_name(conf_dir))
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return None  # replaced between listing and reading: as if not there yet
    except (OSError, UnicodeDecodeError) as exc:
        raise ConflistError(f"cannot read {path}: {exc}") from exc
    entries = podwall_entries(as_conflist(parse_network(text, origin=path)))
    return entries[0] if entries else None
