"""Parse and validate podwall's conflist entry (the JSON on the plugin's stdin).

Keys podwall reads (docs/design.md "The CNI plugin")::

    type                  "podwall" (required)
    name                  network name (required, non-empty string)
    cniVersion            "0.4.0" | "1.0.0" | "1.1.0" (required)
    backend               auto | nftables | iptables-nft | iptables-legacy | iptc   (auto)
    podDefault            deny | allow                                     (deny)
    denyAction            drop | reject                                    (drop)
    stateDir              absolute path                       (/var/lib/podwall)
    runDir                absolute path                           (/run/podwall)
    agentTimeoutMs        int, 0..300000                                   (2000)
    ensureBridgeNetfilter bool                                             (true)
    markBit               int, 0..31                                         (14)

Keys the runtime may add are accepted and not interpreted here: ``prevResult``
(see ``firewall_plugin.result``), ``runtimeConfig``, ``args``, ``capabilities``,
``dns``, ``ipam``, ``cniVersions`` and every ``cni.dev/...`` key.  Any other key,
and any ill-typed value, is a ConfigError (CNI code 7) naming the key.

Pure: no I/O.
"""

from __future__ import annotations

from firewall_plugin import errors, jsoncodec, protocol
from firewall_plugin.values import Frozen, init_fields

TYPE_CHECKING = False  # typing costs the CNI start-up ~4 ms (see values.py)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

BACKENDS = ("auto", "nftables", "iptables-nft", "iptables-legacy", "iptc")
POD_DEFAULTS = ("deny", "allow")
DENY_ACTIONS = ("drop", "reject")
PLUGIN_TYPE = "podwall"
MAX_AGENT_TIMEOUT_MS = 300_000
RUNTIME_KEYS = frozenset(
    {"prevResult", "runtimeConfig", "args", "capabilities", "dns", "ipam", "cniVersions"}
)


class PluginConfig(Frozen):
    """podwall's validated settings plus the raw runtime-supplied parts."""

    __slots__ = (
        "agent_timeout_ms",
        "backend",
        "cni_version",
        "deny_action",
        "ensure_bridge_netfilter",
        "mark_bit",
        "name",
        "pod_default",
        "prev_result",
        "run_dir",
        "runtime",
        "state_dir",
    )
    name: str
    cni_version: str
    backend: str
    pod_default: str
    deny_action: str
    state_dir: str
    run_dir: str
    agent_timeout_ms: int
    ensure_bridge_netfilter: bool
    mark_bit: int
    prev_result: Mapping[str, Any] | None
    runtime: Mapping[str, Any]

    def __init__(
        self,
        name: str,
        cni_version: str,
        backend: str = "auto",
        pod_default: str = "deny",
        deny_action: str = "drop",
        state_dir: str = "/var/lib/podwall",
        run_dir: str = "/run/podwall",
        agent_timeout_ms: int = 2000,
        ensure_bridge_netfilter: bool = True,
        mark_bit: int = 14,
        prev_result: Mapping[str, Any] | None = None,
        runtime: Mapping[str, Any] | None = None,
    ) -> None:
        init_fields(
            self,
            name,
            cni_version,
            backend,
            pod_default,
            deny_action,
            state_dir,
            run_dir,
            agent_timeout_ms,
            ensure_bridge_netfilter,
            mark_bit,
            prev_result,
            {} if runtime is None else runtime,
        )


def _choice(key: str, choices: tuple[str, ...]) -> Any:
    def check(value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            raise errors.ConfigError(f"{key}: {value!r} is not one of {', '.join(choices)}")
        return value

    return check


def _path(key: str) -> Any:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not value.startswith("/"):
            raise errors.ConfigError(f"{key}: {value!r} is not an absolute path")
        return value

    return check


def _int(key: str, low: int, high: int) -> Any:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise errors.ConfigError(f"{key}: {value!r} is not an integer in {low}..{high}")
        return value

    return check


def _bool(key: str) -> Any:
    def check(value: Any) -> bool:
        if not isinstance(value, bool):
            raise errors.ConfigError(f"{key}: {value!r} is not true or false")
        return value

    return check


#: conflist key → (PluginConfig field, validator)
SETTINGS: dict[str, tuple[str, Any]] = {
    "backend": ("backend", _choice("backend", BACKENDS)),
    "podDefault": ("pod_default", _choice("podDefault", POD_DEFAULTS)),
    "denyAction": ("deny_action", _choice("denyAction", DENY_ACTIONS)),
    "stateDir": ("state_dir", _path("stateDir")),
    "runDir": ("run_dir", _path("runDir")),
    "agentTimeoutMs": ("agent_timeout_ms", _int("agentTimeoutMs", 0, MAX_AGENT_TIMEOUT_MS)),
    "ensureBridgeNetfilter": ("ensure_bridge_netfilter", _bool("ensureBridgeNetfilter")),
    "markBit": ("mark_bit", _int("markBit", 0, 31)),
}


def decode(text: str) -> dict[str, Any]:
    """stdin as a JSON object; DecodeError (code 6) otherwise."""
    try:
        data = jsoncodec.loads(text)
    except ValueError as exc:
        raise protocol.DecodeError(f"stdin is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise protocol.DecodeError(f"stdin is JSON {type(data).__name__}, not an object")
    return data


def requested_version(data: Mapping[str, Any]) -> str:
    """The config's cniVersion; VersionError (code 1) when podwall does not speak it."""
    version = data.get("cniVersion")
    if not isinstance(version, str) or not version:
        raise protocol.VersionError(f"cniVersion {version!r} is missing or not a string")
    if version not in protocol.SUPPORTED_VERSIONS:
        supported = ", ".join(protocol.SUPPORTED_VERSIONS)
        raise protocol.VersionError(f"cniVersion {version} is not supported ({supported})")
    return version


def _identity(data: Mapping[str, Any]) -> str:
    kind = data.get("type")
    if kind != PLUGIN_TYPE:
        raise errors.ConfigError(f"type: {kind!r} is not {PLUGIN_TYPE!r}")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise errors.ConfigError(f"name: {name!r} is not a non-empty string")
    return name


def parse(data: Mapping[str, Any]) -> PluginConfig:
    """Validate a decoded conflist entry; raise ConfigError naming the bad key."""
    version = requested_version(data)
    name = _identity(data)
    values: dict[str, Any] = {}
    runtime: dict[str, Any] = {}
    for key, value in data.items():
        if key in ("type", "name", "cniVersion"):
            continue
        if key in SETTINGS:
            attribute, check = SETTINGS[key]
            values[attribute] = check(value)
        elif key in RUNTIME_KEYS or key.startswith("cni.dev/"):
            runtime[key] = value
        else:
            raise errors.ConfigError(f"unknown key {key!r} in the podwall configuration")
    prev = runtime.get("prevResult")
    if prev is not None and not isinstance(prev, dict):
        raise errors.ConfigError(f"prevResult: {type(prev).__name__} is not an object")
    return PluginConfig(name=name, cni_version=version, prev_result=prev, runtime=runtime, **values)
