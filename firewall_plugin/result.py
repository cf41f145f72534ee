"""CNI results: read a ``prevResult``, pick the pod's IPs, convert between versions.

Result formats podwall reads and writes (CNI spec)::

    0.3.x/0.4.0  ips[] carry "version": "4"|"6"
    1.0.0        ips[] lose "version"
    1.1.0        interfaces[] may add mtu, socketPath, pciID;
                 routes[] may add mtu, advmss, priority, table, scope

``convert`` rewrites a result for the version the runtime asked for; other
keys pass through unchanged.  Every address is validated as ``ipaddress`` does
(it ends up in restore text) and normalised to its compressed form, the
spelling ``iptables-save`` prints.

Pure: no I/O.
"""

from __future__ import annotations

from firewall_plugin import addresses, errors, protocol

TYPE_CHECKING = False  # typing costs the CNI start-up ~4 ms (see values.py)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

READABLE_VERSIONS = protocol.SUPPORTED_VERSIONS
INTERFACE_FIELDS_1_1 = ("mtu", "socketPath", "pciID")
ROUTE_FIELDS_1_1 = ("mtu", "advmss", "priority", "table", "scope")


def _list(prev: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    value = prev.get(key, [])
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise errors.ConfigError(f"prevResult.{key} is not a list of objects")
    return value


def normalise_address(address: Any) -> str:
    """``10.1.0.5/24`` → the same, validated; ConfigError when not an address."""
    if not isinstance(address, str):
        raise errors.ConfigError(f"prevResult address {address!r} is not a string")
    try:
        return addresses.interface(address)
    except ValueError as exc:
        raise errors.ConfigError(f"prevResult address {address!r} is not an IP/prefix") from exc


def validate(prev: Mapping[str, Any], *, config_version: str) -> str:
    """Check the shape of ``prev``; return the version it is written in."""
    version = prev.get("cniVersion", config_version)
    if version not in READABLE_VERSIONS:
        raise protocol.VersionError(f"prevResult cniVersion {version!r} is not supported")
    interfaces = _list(prev, "interfaces")
    for item in interfaces:
        if not isinstance(item.get("name"), str):
            raise errors.ConfigError("prevResult.interfaces[] entry without a string name")
    for item in _list(prev, "ips"):
        normalise_address(item.get("address"))
        index = item.get("interface")
        is_index = isinstance(index, int) and not isinstance(index, bool)
        if index is not None and not (is_index and 0 <= index < len(interfaces)):
            raise errors.ConfigError(f"prevResult.ips[].interface {index!r} is not an index")
    _list(prev, "routes")
    return str(version)


def convert(prev: Mapping[str, Any], to_version: str) -> dict[str, Any]:
    """``prev`` rewritten in the result format of ``to_version``."""
    out = dict(prev)
    out["cniVersion"] = to_version
    old = to_version.startswith("0.")
    ips = []
    for item in _list(prev, "ips"):
        ip = {key: value for key, value in item.items() if key != "version"}
        if old:
            address = normalise_address(item.get("address"))
            ip = {"version": "6" if ":" in address else "4", **ip}
        ips.append(ip)
    if "ips" in prev:
        out["ips"] = ips
    if to_version != "1.1.0":
        if "interfaces" in prev:
            interfaces = _list(prev, "interfaces")
            out["interfaces"] = [_without(i, INTERFACE_FIELDS_1_1) for i in interfaces]
        if "routes" in prev:
            out["routes"] = [_without(r, ROUTE_FIELDS_1_1) for r in _list(prev, "routes")]
    return out


def _without(item: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: value for key, value in item.items() if key not in keys}


def container_indices(prev: Mapping[str, Any], ifname: str) -> set[int]:
    """Indices of the container-side interface: in a sandbox and named
    ``ifname``; failing that, every interface in a sandbox."""
    interfaces = _list(prev, "interfaces")
    inside = {i for i, item in enumerate(interfaces) if item.get("sandbox")}
    named = {i for i in inside if interfaces[i].get("name") == ifname}
    return named or inside


def pod_ips(prev: Mapping[str, Any], ifname: str) -> tuple[str, ...]:
    """The pod's addresses (``IP/prefix``, normalised, deduplicated): the IPs of
    the container-side interface, plus IPs that name no interface."""
    indices = container_indices(prev, ifname)
    chosen: list[str] = []
    for item in _list(prev, "ips"):
        index = item.get("interface")
        if index is None or index in indices:
            chosen.append(normalise_address(item.get("address")))
    return tuple(dict.fromkeys(chosen))


def host_side_interfaces(prev: Mapping[str, Any]) -> list[str]:
    """Names of the interfaces outside the sandbox (bridges, host veths), in order."""
    return [str(item["name"]) for item in _list(prev, "interfaces") if not item.get("sandbox")]
