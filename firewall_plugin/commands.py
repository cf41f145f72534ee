"""The CNI verbs: each a short parse → act → return.

``cmd_add`` returns the result to print; the other verbs return None or raise
an error from ``firewall_plugin.errors``/``protocol`` that ``cni.main`` turns
into CNI error JSON.  Nothing here writes to stdout or exits; the only stderr
output is one line when the agent's fast path or the conntrack flush fails.

ADD trusts nothing it is given: a prevResult address that no pod can own
(unspecified, loopback, link-local, multicast, broadcast) or that another
attachment of this node holds is refused before anything is written, and
the pod's identity (host-side interface, its bridge, its link-local address)
is read from the kernel, not from the result.  ADD, DEL and GC write under
``locking.podwall_lock``; CHECK and STATUS are read-only (no lock, no file,
no chain is created).  The data plane is ``nft.ops`` for the nftables
backend and ``sync`` (iptables) for the others.
"""

from __future__ import annotations

import os
import sys

from firewall_plugin import (
    addresses,
    agent_client,
    endpoints,
    errors,
    links,
    locking,
    model,
    names,
    podns,
    protocol,
    result,
    sync,
    sysctl,
)

TYPE_CHECKING = False  # typing costs the CNI start-up ~4 ms (see values.py)
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

    from firewall_plugin.backends.table import KernelTable
    from firewall_plugin.config import PluginConfig
    from firewall_plugin.nft.netlink import Netlink

NFTABLES = "nftables"


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
    for ip in ips:
        why = addresses.not_a_pod_address(ip)
        if why:
            raise errors.ConfigError(f"prevResult address {ip} is {why}: no pod can own it")
    return ips


def _host_interface(host_side: list[str]) -> tuple[str, str, tuple[int, int]]:
    """The pod's end on this node, the bridge it is a port of ('' when
    routed) and where its peer is ((nsid, index); nsid -1: unknown): the last
    host-side interface of the result that exists here and is a veth (or any
    link whose peer is in another namespace); not, e.g., the bridge, or the
    ifb the ``bandwidth`` plugin adds."""
    for name in reversed(host_side):
        kind, nsid, master, peer = links.inspect(name)
        if kind == "veth" or nsid >= 0:
            return name, links.bridge_named(master), (nsid, peer)
    raise errors.ConfigError(
        "prevResult names no host-side interface of this node for the pod (a veth end): "
        "podwall tells pods apart by the interface their packets arrive on"
    )


def _refuse_duplicates(
    record: endpoints.EndpointRecord, records: Sequence[endpoints.EndpointRecord]
) -> None:
    mine = set(record.addresses())
    for other in records:
        if other.attachment == record.attachment:
            continue
        shared = mine & set(other.addresses())
        if shared:
            raise errors.ConfigError(
                f"prevResult address {sorted(shared)[0]} is already held by "
                f"{other.pod} ({other.containerID}/{other.ifName}) on this node"
            )


def _link_local(env: protocol.Environment, ips: tuple[str, ...], peer: tuple[int, int]) -> str:
    """The pod's IPv6 link-local address: asked about the veth's peer from
    here when the kernel can tell (no thread in the pod's namespace, no
    ctypes: ~4 ms less), else read inside the pod's namespace."""
    if not any(model.family_of(ip) == "ipv6" for ip in ips):
        return ""
    nsid, index = peer
    if nsid >= 0 and index > 0:
        found = links.peer_link_local(nsid, index, env.ifname)
        if found is not None:
            return found
    try:
        return podns.link_local(env.netns, env.ifname)
    except OSError as exc:
        raise errors.StateError(f"cannot read the pod's link-local address: {exc}") from exc


def cmd_add(env: protocol.Environment, config: PluginConfig) -> dict[str, Any]:
    prev = _prev_result(config, "ADD")
    _require_netns(env)
    ips = _pod_ips(prev, env)
    interface, bridge, peer = _host_interface(result.host_side_interfaces(prev))
    if bridge:
        # both families, whatever the pod's: an IPv4-only pod's link-local IPv6 must
        # reach the rules that drop it (iptables backends)
        sysctl.ensure_bridge_netfilter(sync.node_families(), fix=config.ensure_bridge_netfilter)
    record = endpoints.EndpointRecord.make(
        container_id=env.container_id,
        ifname=env.ifname,
        podNamespace=env.pod_namespace,
        podName=env.pod_name,
        podUID=env.pod_uid,
        ips=ips,
        hostInterface=interface,
        bridge=bridge,
        linkLocal=_link_local(env, ips, peer),
        netns=env.netns,
    )
    with locking.podwall_lock(config.run_dir, timeout=env.lock_timeout):
        found = list(endpoints.read_all(config.state_dir))
        others = [r for r in found if r.key != record.key]
        _refuse_duplicates(record, others)
        if sync.resolve_name(config, remember=True) == NFTABLES:
            previous = next((r for r in found if r.key == record.key), None)
            with _netfilter() as sock:
                _attach_nft(config, record, others, previous, sock)
                _forget_flows(ips, "ADD", env, sock)
        else:
            sync.attach(sync.resolve_backend(config, remember=True), config, record)
            _forget_flows(ips, "ADD", env)
    _ask_agent(env, config)
    return result.convert(prev, config.cni_version)


def _attach_nft(
    config: PluginConfig,
    record: endpoints.EndpointRecord,
    others: Sequence[endpoints.EndpointRecord],
    previous: endpoints.EndpointRecord | None,
    sock: Netlink,
) -> None:
    """``previous``: the attachment's record before this ADD (a second ADD)."""
    from firewall_plugin.nft import ops

    endpoints.write(config.state_dir, record)
    try:
        ops.attach(config, record, [*others, record], sock=sock, previous=previous)
    except BaseException:  # one transaction: the kernel holds nothing of it
        if previous is None:
            endpoints.remove(config.state_dir, record.containerID, record.ifName)
        else:
            endpoints.write(config.state_dir, previous)
        raise


def _netfilter() -> Netlink:
    """The nftables backend's one netfilter socket for a verb: its kernel
    write and then its conntrack work, closed last (see ``nft.ops.detach``)."""
    from firewall_plugin.nft import netlink

    return netlink.Netlink()


def _forget_flows(
    ips: Sequence[str], verb: str, env: protocol.Environment, sock: Netlink | None = None
) -> None:
    """Delete the conntrack entries of the pod's addresses (a reused IP must
    not inherit an old flow); a failure is reported, never fatal."""
    if not ips:
        return
    from firewall_plugin import conntrack

    try:
        conntrack.forget(ips, sock)
    except errors.PodwallError as exc:
        print(f"podwall: {verb} {env.container_id}/{env.ifname}: conntrack: {exc}", file=sys.stderr)


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
    sock = None
    try:
        with locking.podwall_lock(config.run_dir, timeout=env.lock_timeout):
            if sync.resolve_name(config, remember=True) == NFTABLES:
                sock = _netfilter()
                ips = _detach_nft(config, env.container_id, env.ifname, sock)
            else:
                ips = _record_ips(config, env)
                sync.detach(
                    sync.resolve_backend(config, remember=True),
                    config, env.container_id, env.ifname,
                )  # fmt: skip
        _forget_flows(ips, "DEL", env, sock)
    finally:
        if sock is not None:
            sock.close()


def _record_ips(config: PluginConfig, env: protocol.Environment) -> list[str]:
    try:
        record = endpoints.read(config.state_dir, env.container_id, env.ifname)
    except errors.StateError:
        return []
    return list(record.ips) if record else []


def _detach_nft(config: PluginConfig, container_id: str, ifname: str, sock: Netlink) -> list[str]:
    """The kernel first, then the record: a DEL that fails keeps it (for the retry)."""
    from firewall_plugin.nft import ops

    try:
        record = endpoints.read(config.state_dir, container_id, ifname)
    except errors.StateError:
        record = None
    key = endpoints.record_stem(container_id, ifname)
    others = [r for r in endpoints.read_all(config.state_dir) if r.key != key]
    ips = ops.detach(config, container_id, ifname, record, others, sock)
    endpoints.remove(config.state_dir, container_id, ifname)
    return ips


def cmd_check(env: protocol.Environment, config: PluginConfig) -> None:
    prev = _prev_result(config, "CHECK")
    _require_netns(env)
    ips = _pod_ips(prev, env)
    problems: list[str] = []
    try:
        record = endpoints.read(config.state_dir, env.container_id, env.ifname)
    except errors.StateError as exc:
        record = None
        problems.append(str(exc))
    if record is None:
        path = endpoints.record_path(config.state_dir, env.container_id, env.ifname)
        problems.append(f"endpoint record {path} is missing")
        interface, bridge, _ = _host_interface(result.host_side_interfaces(prev))
        endpoint = model.Endpoint(
            key=endpoints.record_stem(env.container_id, env.ifname),
            container_id=env.container_id,
            ifname=env.ifname,
            pod=f"{env.pod_namespace}/{env.pod_name}",
            interface=interface,
            bridge=bridge,
            addresses=tuple(ip.split("/", 1)[0] for ip in ips),
        )
    else:
        endpoint = record.endpoint()
    if sync.resolve_name(config, remember=False) == NFTABLES:
        from firewall_plugin.nft import ops

        problems += ops.check(config, record, endpoint)
    else:
        problems += _check_iptables(config, endpoint)
    if problems:
        raise protocol.CheckError("; ".join(problems))


def _check_iptables(config: PluginConfig, endpoint: model.Endpoint) -> list[str]:
    backend = sync.resolve_backend(config, remember=False)
    families = [family for family in model.FAMILIES if endpoint.sources(family)]
    wanted = [*sync.DISPATCH, *sync.owned_chains(endpoint.container_id, endpoint.ifname)]

    def read(family: model.Family) -> KernelTable:
        return backend.read_chains(family, wanted)

    tables = sync.for_families(backend, families, read)
    problems: list[str] = []
    for family in families:
        problems += _missing(tables[family], family, endpoint)
    return problems


def _missing(table: KernelTable, family: model.Family, endpoint: model.Endpoint) -> list[str]:
    """What CHECK finds missing in one family's table."""
    problems = [
        f"chain {chain} ({family}) is missing"
        for chain in sync.owned_chains(endpoint.container_id, endpoint.ifname)
        if chain not in table.chains
    ]
    for hook, chain in names.HOOK_CHAINS.items():
        first = table.hooks[hook][0].split()[-2:] if table.hooks[hook] else []
        if first != ["-j", chain]:
            problems.append(f"the {hook} jump to {chain} ({family}) is not rule 1")
        if chain not in table.chains:
            problems.append(f"chain {chain} ({family}) is missing")
    if not sync.anchored(table, endpoint):
        source = names.from_chain(endpoint.container_id, endpoint.ifname)
        problems.append(
            f"the dispatch to {source} ({family}) is missing from {names.FORWARD_CHAIN}"
        )
    to = table.chains.get(names.TO_CHAIN, [])
    ingress = names.ingress_chain(endpoint.container_id, endpoint.ifname)
    for address in endpoint.sources(family):
        width = 128 if family == "ipv6" else 32
        wanted = (f"-d {address}/{width}", f"-j {ingress}")
        if not any(all(part in spec for part in wanted) for spec in to):
            problems.append(
                f"ingress dispatch for {address} (-j {ingress}) is missing from {names.TO_CHAIN}"
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
        if sync.resolve_name(config, remember=True) == NFTABLES:
            from firewall_plugin.nft import ops

            kept = sync.prune_records(config, valid)
            ops.sweep(config, kept)
        else:
            sync.collect(sync.resolve_backend(config, remember=True), config, valid)


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
        if sync.resolve_name(config, remember=False) == NFTABLES:
            from firewall_plugin.nft import ops

            why = ops.ready()
            if why:
                problems.append(f"backend nftables: {why}")
        else:
            sync.resolve_backend(config, remember=False).read_chains("ipv4", [])
    except errors.PodwallError as exc:
        problems.append(f"backend {config.backend}: {exc}")
    if problems:
        raise protocol.NotReadyError("; ".join(problems))
