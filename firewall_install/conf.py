"""Chain a ``podwall`` entry into the node's primary CNI network config, or take it out.

Which file is the primary one, and how it is parsed, is
``firewall_plugin.conflist`` (the agent reads its settings through it too).
``install_conf`` makes that file hold exactly one
podwall entry with the wanted options; ``uninstall_conf`` removes podwall
entries from every config file of the folder.  Rules kept here:

* Files are only ever replaced by rename (``firewall_plugin.atomicfile``), and
  only when the source is unchanged since it was read: a primary CNI
  rewriting it meanwhile wins, and we read again.
* A ``.conf``/``.json`` single-plugin file becomes ``<stem>.conflist`` (written
  first, then the old file removed: at every moment a valid file is first).
  Uninstall leaves it a ``.conflist`` (the same network without podwall).
* The entry holds ``type`` plus only the settings given; the plugin's defaults
  apply to the rest.  An existing podwall entry is replaced in place (never
  stacked); a new one is appended last (after the primary plugin and its
  chained helpers).  Several entries, or one at position 0 (it needs the
  primary's prevResult), collapse to one entry, last.
* ``cniVersion`` and every other plugin entry are kept as the file has them;
  a ``cniVersion`` the plugin does not speak is refused (every ADD would fail).
  Nothing is written when the file is already right.

No kopf, no Kubernetes client, no kernel access: files only.  Errors of the
plugin package (bad settings, unreadable files) are mapped to ``InstallError``
here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from firewall_install.errors import InstallError
from firewall_plugin import atomicfile, config, protocol
from firewall_plugin.conflist import (
    PLUGIN_TYPE,
    ConflistError,
    Network,
    as_conflist,
    conf_names,
    is_podwall,
    parse_network,
    podwall_entries,
    primary_name,
)
from firewall_plugin.errors import ConfigError

WRITE_ATTEMPTS = 5


@dataclass(slots=True)
class Report:
    """What an install or uninstall step did: actions taken and warnings."""

    actions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def extend(self, other: Report) -> None:
        self.actions.extend(other.actions)
        self.warnings.extend(other.warnings)


# ---------------------------------------------------------------- pure parts


def chained(conflist: Network, entry: Network) -> Network:
    """``conflist`` with exactly one podwall plugin equal to ``entry``."""
    plugins: list[Network] = list(conflist["plugins"])
    positions = [i for i, plugin in enumerate(plugins) if is_podwall(plugin)]
    others = [plugin for plugin in plugins if not is_podwall(plugin)]
    if not others:
        raise InstallError("the config has no plugin besides podwall to chain after")
    if len(positions) == 1 and positions[0] > 0:
        plugins[positions[0]] = dict(entry)
    else:
        plugins = [*others, dict(entry)]
    return {**conflist, "plugins": plugins}


def unchained(conflist: Network) -> Network:
    """``conflist`` without podwall plugins."""
    plugins = [plugin for plugin in conflist["plugins"] if not is_podwall(plugin)]
    return {**conflist, "plugins": plugins}


def is_chained(network: Network, entry: Network) -> bool:
    """True when ``network`` is a conflist whose only podwall entry equals ``entry``."""
    if "plugins" not in network:
        return False
    found = [(i, p) for i, p in enumerate(network["plugins"]) if is_podwall(p)]
    return len(found) == 1 and found[0][0] > 0 and found[0][1] == entry


def render(network: Network) -> str:
    return json.dumps(network, indent=2) + "\n"


def conflist_name(name: str) -> str:
    """The ``.conflist`` name a single conf file is converted to (same stem)."""
    stem, _ = os.path.splitext(name)
    return stem + ".conflist"


# ---------------------------------------------------------------- entry


def build_entry(settings: Mapping[str, Any]) -> Network:
    """``{"type": "podwall", ...}`` with only the given settings (conflist keys).

    Values are checked with the plugin's own validators, so a bad option fails
    here and not at every pod's ADD.  Settings left out take the plugin's
    defaults, which therefore live in one place (``firewall_plugin.config``).
    """
    entry: Network = {"type": PLUGIN_TYPE}
    for key, value in settings.items():
        if key not in config.SETTINGS:
            raise InstallError(f"unknown podwall setting {key!r}")
        _, check = config.SETTINGS[key]
        try:
            entry[key] = check(value)
        except ConfigError as exc:
            raise InstallError(str(exc)) from exc
    return entry


# ---------------------------------------------------------------- install / uninstall


def install_conf(
    conf_dir: str,
    entry: Network,
    *,
    versions: Sequence[str] = protocol.SUPPORTED_VERSIONS,
) -> Report:
    """Make the primary config chain exactly one podwall ``entry`` (retries races).

    Refuses a primary config whose ``cniVersion`` is not in ``versions``: the
    plugin would fail every pod's ADD with it.
    """
    for _ in range(WRITE_ATTEMPTS):
        try:
            return _install_once(conf_dir, entry, versions)
        except (atomicfile.ConcurrentChange, FileNotFoundError):
            continue
        except ConflistError as exc:
            raise InstallError(str(exc)) from exc
        except OSError as exc:
            raise InstallError(f"cannot update the CNI config in {conf_dir}: {exc}") from exc
    raise InstallError(f"the primary config in {conf_dir} kept changing; try again")


def _install_once(conf_dir: str, entry: Network, versions: Sequence[str]) -> Report:
    names = conf_names(conf_dir)
    primary = primary_name(conf_dir)
    path = os.path.join(conf_dir, primary)
    snapshot = _read(path)
    network = parse_network(snapshot.text, origin=path)
    check_version(network, origin=path, versions=versions)
    report = Report()
    if is_chained(network, entry):
        return report
    conflist = chained(as_conflist(network), entry)
    if "plugins" in network:
        atomicfile.atomic_write(path, render(conflist), mode=snapshot.mode, expect=snapshot)
        report.actions.append(f"chained podwall into {path}")
        return report
    target = conflist_name(primary)
    rivals = [name for name in names if name not in (primary, target)]
    if rivals and rivals[0] < target:
        raise InstallError(
            f"converting {primary} to {target} would let {rivals[0]} become the first "
            "config; rename the files or convert the config to a .conflist by hand"
        )
    atomicfile.atomic_write(os.path.join(conf_dir, target), render(conflist), mode=snapshot.mode)
    if snapshot.changed():
        raise atomicfile.ConcurrentChange(f"{path} changed while podwall was converting it")
    os.unlink(path)
    atomicfile.sync_dir(conf_dir)
    report.actions.append(f"converted {path} to {target} and chained podwall into it")
    return report


def check_version(network: Network, *, origin: str, versions: Sequence[str]) -> None:
    version = network.get("cniVersion")
    if version not in versions:
        raise InstallError(
            f"{origin} has cniVersion {version!r} and the podwall plugin speaks only "
            f"{', '.join(versions)}; chaining it would fail every pod's ADD"
        )


def uninstall_conf(conf_dir: str) -> Report:
    """Remove podwall entries from every CNI config file of ``conf_dir``.

    A converted ``.conf`` stays a ``.conflist`` (same network, same plugins).
    Unparsable files are left alone, with a warning when they mention podwall.
    """
    report = Report()
    try:
        names = conf_names(conf_dir)
    except ConflistError as exc:
        report.warnings.append(str(exc))
        return report
    for name in names:
        for _ in range(WRITE_ATTEMPTS):
            try:
                report.extend(_unchain_file(os.path.join(conf_dir, name)))
                break
            except atomicfile.ConcurrentChange:
                continue
            except FileNotFoundError:
                break
            except OSError as exc:
                raise InstallError(f"cannot update {name} in {conf_dir}: {exc}") from exc
        else:
            report.warnings.append(f"{name} kept changing; podwall may still be in it")
    return report


def _unchain_file(path: str) -> Report:
    report = Report()
    snapshot = _read(path)
    try:
        network = parse_network(snapshot.text, origin=path)
    except ConflistError as exc:
        if PLUGIN_TYPE in snapshot.text:
            report.warnings.append(f"left unchanged: {exc}")
        return report
    if "plugins" not in network or not podwall_entries(network):
        return report
    remaining = unchained(network)
    if not remaining["plugins"]:
        report.warnings.append(f"{path} holds only podwall; left unchanged")
        return report
    atomicfile.atomic_write(path, render(remaining), mode=snapshot.mode, expect=snapshot)
    report.actions.append(f"removed podwall from {path}")
    return report


def _read(path: str) -> atomicfile.Snapshot:
    """Snapshot of ``path``; FileNotFoundError passes (a race), other errors map."""
    try:
        return atomicfile.read_snapshot(path)
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise InstallError(f"cannot read {path}: {exc}") from exc
