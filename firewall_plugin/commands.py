"""The CNI verbs: each a short parse → act → return.

``cmd_add`` returns the result to print; the other verbs return None or raise
an error from ``firewall_plugin.errors``/``protocol`` that ``cni.main`` turns
into CNI error JSON.  Nothing here writes to stdout or exits; the only stderr
output is one line when the agent's fast path fails.

ADD, DEL and GC write under ``locking.podwall_lock``; CHECK and STATUS are
read-only (no lock, no file, no chain is created).
"""

from __future__ import annotations

import os
import sys

from firewall_plugin import (
    agent_client,
    endpoints,
    errors,
    locking,
    model,
    names,
    protocol,
    result,
    sync,
    sysctl,
)

TYPE_CHECKING = False  # typing costs the CNI start-up ~4 ms (see values.py)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from firewall_plugin.backends.table import KernelTable
    from firewall_plugin.config import PluginConfig


def cmd_version() -> dict[str, Any]:
    return {
        "cniVersion": protocol.LATEST_VERSION,
        "supportedVersions": list(protocol.SUPPORTED_VERSIONS),
    }


def _prev_result(config: PluginConfig, verb: str) -> Mapping[str, Any]:
    prev = config.prev_result
    if prev is None:
        raise errors.ConfigError(
            f"{verb} needs prevResult: podwall runs chained after a primary CNI"
        )
    result.validate(prev, config_version=config.cni_version)
    return prev


def _require_netns(env: protocol.Environment) -> None:
    if not os.path.exists(env.netns):
        raise protocol.ContainerUnknownError(f"CNI_NETNS {env.netns} does not exist")


def _pod_ips(prev: Mapping[str, Any], env: protocol.Environment) -> tuple[str, ...]:
    ips = result.pod_ips(prev, env.ifname)
    if not ips:
        raise errors.ConfigError(
            f"prevResult has no IP for interface {env.ifname}: nothing podwall could filter"
        )
    return ips


def _host_interface(host_side: list[str]) -> str:
    ports = [name for name in host_side if not sysctl.is_bridge(name)]
    return ports[-1] if ports else ""


def cmd_add(env: protocol.Environment, config: PluginConfig) -> dict[str, Any]:
    prev = _prev_result(config, "ADD")
    _require_netns(env)
    ips = _pod_ips(prev, env)
    host_side = result.host_side_interfaces(prev)
    if sysctl.is_bridged(host_side):
        sysctl.ensure_bridge_netfilter(sync.families_of(ips), fix=config.ensure_bridge_netfilter)
    record = endpoints.EndpointRecord.make(
        container_id=env.container_id,
        ifname=env.ifname,
        podNamespace=env.pod_namespace,
        podName=env.pod_name,
        podUID=env.pod_uid,
        ips=ips,
        hostInterface=_host_interface(host_side),
        netns=env.netns,
    )
    with locking.podwall_lock(config.run_dir, timeout=env.lock_timeout):
        backend = sync.resolve_backend(config, remember=True)
        sync.attach(backend, config, record)
    _ask_agent(env, config)
    return result.convert(prev, config.cni_version)


def _ask_agent(env: protocol.Environment, config: PluginConfig) -> None:
    line = agent_client.request_line(
        container_id=env.container_id,
        ifname=env.ifname,
        pod_namespace=env.pod_namespace,
        pod_name=env.pod_name,
        pod_uid=env.pod_uid,
    )
    answer = agent_client.program(config.run_dir, timeout_ms=config.agent_timeout_ms, line=line)
    if answer.asked and not answer.ok:
        print(
            f"podwall: ADD {env.container_id}/{env.ifname}: {answer.detail}; "
            f"pod keeps podDefault={config.pod_default} until the agent programs it",
            file=sys.stderr,
        )


def cmd_del(env: protocol.Environment, config: PluginConfig) -> None:
    with locking.podwall_lock(config.run_dir, timeout=env.lock_timeout):
        backend = sync.resolve_backend(config, remember=True)
        sync.detach(backend, config, env.container_id, env.ifname)


def cmd_check(env: protocol.Environment, config: PluginConfig) -> None:
    prev = _prev_result(config, "CHECK")
    _require_netns(env)
    ips = _pod_ips(prev, env)
    problems: list[str] = []
    if endpoints.read(config.state_dir, env.container_id, env.ifname) is None:
        path = endpoints.record_path(config.state_dir, env.container_id, env.ifname)
        problems.append(f"endpoint record {path} is missing")
    backend = sync.resolve_backend(config, remember=False)
    families = sync.families_of(ips)
    wanted = [names.FORWARD_CHAIN, *sync.pod_chains(env.container_id, env.ifname)]

    def read(family: model.Family) -> KernelTable:
        return backend.read_chains(family, wanted)

    tables = sync.for_families(backend, families, read)
    for family in families:
        problems += _missing(tables[family], family, env, ips)
    if problems:
        raise protocol.CheckError("; ".join(problems))


def _dispatches(spec: str, flag: str, address: str, chain: str) -> bool:
    words = spec.split()
    pairs = {(words[i], words[i + 1]) for i in range(len(words) - 1)}
    return (flag, address) in pairs and ("-j", chain) in pairs


def _missing(
    table: KernelTable, family: model.Family, env: protocol.Environment, ips: tuple[str, ...]
) -> list[str]:
    """What CHECK finds missing in one family's table."""
    ingress = names.ingress_chain(env.container_id, env.ifname)
    egress = names.egress_chain(env.container_id, env.ifname)
    problems = [
        f"chain {chain} ({family}) is missing"
        for chain in (ingress, egress)
        if chain not in table.chains
    ]
    first = table.forward[0].split()[-2:] if table.forward else []
    if first != ["-j", names.FORWARD_CHAIN]:
        problems.append(f"the FORWARD jump to {names.FORWARD_CHAIN} ({family}) is not rule 1")
    forward = table.chains.get(names.FORWARD_CHAIN)
    if forward is None:
        return [*problems, f"chain {names.FORWARD_CHAIN} ({family}) is missing"]
    width = 128 if family == "ipv6" else 32
    for ip in ips:
        if model.family_of(ip) != family:
            continue
        address = f"{ip.split('/', 1)[0]}/{width}"
        for flag, chain, kind in (("-s", egress, "egress"), ("-d", ingress, "ingress")):
            if not any(_dispatches(spec, flag, address, chain) for spec in forward):
                problems.append(
                    f"{kind} dispatch rule for IP {address} ({flag} {address} -j {chain}) "
                    f"is missing from {names.FORWARD_CHAIN}"
                )
    return problems


def valid_attachments(config: PluginConfig) -> set[tuple[str, str]]:
    """GC's ``cni.dev/valid-attachments`` (or the older ``cni.dev/attachments``)."""
    raw = config.runtime.get("cni.dev/valid-attachments", config.runtime.get("cni.dev/attachments"))
    if raw is None:
        raise errors.ConfigError("GC needs cni.dev/valid-attachments")
    if not isinstance(raw, list):
        raise errors.ConfigError("cni.dev/valid-attachments is not a list")
    valid: set[tuple[str, str]] = set()
    for item in raw:
        if not isinstance(item, dict) or not all(
            isinstance(item.get(key), str) for key in ("containerID", "ifname")
        ):
            raise errors.ConfigError(
                f"cni.dev/valid-attachments entry {item!r} lacks string containerID and ifname"
            )
        valid.add((item["containerID"], item["ifname"]))
    return valid


def cmd_gc(env: protocol.Environment, config: PluginConfig) -> None:
    valid = valid_attachments(config)
    with locking.podwall_lock(config.run_dir, timeout=env.lock_timeout):
        backend = sync.resolve_backend(config, remember=True)
        sync.collect(backend, config, valid)


def _writable(path: str) -> str:
    """'' when ``path`` is (or could be made as) a writable folder, else why not."""
    probe = path
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        return f"{probe} is not a directory"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable"
    return ""


def cmd_status(env: protocol.Environment, config: PluginConfig) -> None:
    problems = []
    for key, path in (
        ("stateDir", config.state_dir),
        ("stateDir endpoints", endpoints.endpoints_dir(config.state_dir)),
        ("runDir", config.run_dir),
    ):
        why = _writable(path)
        if why:
            problems.append(f"{key} {path}: {why}")
    try:
        backend = sync.resolve_backend(config, remember=False)
        backend.read_chains("ipv4", [])
    except errors.PodwallError as exc:
        problems.append(f"backend {config.backend}: {exc}")
    if problems:
        raise protocol.NotReadyError("; ".join(problems))
