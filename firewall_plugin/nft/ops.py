"""The CNI plugin's node writes with the nftables backend: one transaction each.

ADD puts the pod's identity elements (``layout.endpoint_items``) and its two
default policy chains per family into the tables (a second ADD of the
attachment takes out what its previous identity had and the new one has
not); DEL takes its own elements (those of its record and any other that
jumps to its chains) and chains out (elements its bridge shares with other
pods stay: the agent drops them when the last pod leaves).  Each is ONE
netlink transaction, in this process: no ``nft`` binary, no library,
nothing else to start.

Never wedged by other endpoints' kernel state: when the table is missing
(after a reboot that kept the state folder, after ``nft flush ruleset``) or
was written by another layout version, ADD and DEL rebuild the skeleton and
give every record the default chains (fail-closed until the agent programs
it) in the same transaction; when the table is there, records whose
dispatch the kernel lacks, egress or ingress (a plugin that died between its
record and its write; a chain deleted by hand with its map element), are
repaired the same way.  The table's comment names the node's
state folder: a second podwall entry with another ``stateDir`` is refused.

Callers hold ``locking.podwall_lock``.
"""

from __future__ import annotations

from firewall_plugin import dataplane, endpoints, errors, model, names
from firewall_plugin.nft import kernel, layout, translate
from firewall_plugin.nft import netlink as nl
from firewall_plugin.nft import objects as obj

TYPE_CHECKING = False  # typing costs the CNI start-up ~4 ms (see values.py)
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from firewall_plugin.config import PluginConfig

TIERS = tuple(f"{d}{t}" for d in "IE" for t in "ANB")


def policy_chain_names(container_id: str, ifname: str, family: model.Family) -> list[str]:
    """The nft names of an attachment's policy chains of ``family``, main
    chains first (they jump to the tier chains)."""
    key = endpoints.record_stem(container_id, ifname)
    base = [names.ingress_chain(container_id, ifname), names.egress_chain(container_id, ifname)]
    tiers = names.tier_chains(key)
    return [layout.chain_name(name, family) for name in (*base, *tiers)]


def table_state(sock: nl.Netlink) -> tuple[bool, str, str]:
    """(table exists, its layout version, its state folder)."""
    comment = kernel.table_comment(sock)
    if comment is None or kernel.table_comment(sock, layout.BRIDGE) is None:
        return False, "", ""
    version, state = layout.parse_table_comment(comment)
    return True, version, state


def _check_owner(config: PluginConfig, state: str) -> None:
    if state and state != config.state_dir:
        raise errors.ConfigError(
            f"this node's podwall state lives in {state}; a podwall entry with stateDir "
            f"{config.state_dir} would drop the pods of the other: use one stateDir per node"
        )


def add_default_chains(
    batch: nl.Batch, record: endpoints.EndpointRecord, config: PluginConfig
) -> None:
    """The pod's ingress and egress chains of each of its families, created
    or emptied, holding ``podDefault``."""
    endpoint = record.endpoint()
    for family in model.FAMILIES:
        if not endpoint.sources(family):
            continue
        for chain in dataplane.default_chains(
            record,
            family,
            pod_default=config.pod_default,  # type: ignore[arg-type]
            deny_action=config.deny_action,  # type: ignore[arg-type]
        ):
            write_chain(batch, chain, family, fresh=False)


def write_chain(batch: nl.Batch, chain: model.Chain, family: model.Family, *, fresh: bool) -> None:
    """Create (or empty, unless ``fresh``: known not to exist) and fill ``chain``."""
    name = layout.chain_name(chain.name, family)
    obj.add_chain(batch, layout.INET, layout.TABLE, name)
    if not fresh:
        obj.flush_chain(batch, layout.INET, layout.TABLE, name)
    for expressions, comment in translate.chain_rules(chain, family):
        obj.add_rule(
            batch, layout.INET, layout.TABLE, name, expressions,
            comment=comment, digest=layout.rule_digest(expressions),
        )  # fmt: skip


def put_items(batch: nl.Batch, items: Sequence[layout.Item]) -> None:
    """Add a record's identity elements.  A verdict-map element with one of
    its keys can only be stale (no other record holds its addresses: ADD
    refuses duplicates), one of a pod whose record is gone; it would refuse
    the write (EEXIST), so it is taken out first."""
    layout.remove_items(batch, [item for item in items if item[3] is not None])
    layout.add_items(batch, items)


def _anchored(sock: nl.Netlink) -> set[str]:
    """The chains the kernel's egress and ingress maps lead to."""
    found: set[str] = set()
    for set_name in ("from4", "from6", "to4", "to6"):
        found |= kernel.verdict_chains(sock, layout.INET, set_name)
    return found


def _lacking(
    sock: nl.Netlink, records: Sequence[endpoints.EndpointRecord]
) -> list[endpoints.EndpointRecord]:
    present = _anchored(sock)
    lacking = []
    for record in records:
        endpoint = record.endpoint()
        wanted = [
            layout.chain_name(chain, family)
            for family in model.FAMILIES
            if endpoint.sources(family)
            for chain in (record.egressChain, record.ingressChain)
        ]
        if wanted and not present.issuperset(wanted):
            lacking.append(record)
    return lacking


def _prepare(
    sock: nl.Netlink,
    config: PluginConfig,
    batch: nl.Batch,
    others: Sequence[endpoints.EndpointRecord],
) -> None:
    """Rebuild what the kernel lacks for ``others`` (see the module docstring)."""
    exists, version, state = table_state(sock)
    if exists:
        _check_owner(config, state)
    if not exists or version != layout.VERSION:
        layout.skeleton(batch, state_dir=config.state_dir)
        lacking: Sequence[endpoints.EndpointRecord] = others
    else:
        lacking = _lacking(sock, others)
    for record in lacking:
        add_default_chains(batch, record, config)
        put_items(batch, layout.endpoint_items(record.endpoint()))


def repair(config: PluginConfig, records: Sequence[endpoints.EndpointRecord]) -> None:
    """Give every record the kernel lacks its fail-closed state (nothing
    when all are there): what the agent runs at start-up."""
    with nl.Netlink() as sock:
        batch = nl.Batch()
        _prepare(sock, config, batch, records)
        sock.commit(batch)


def attach(
    config: PluginConfig,
    record: endpoints.EndpointRecord,
    records: Sequence[endpoints.EndpointRecord],
    *,
    sock: nl.Netlink,
    previous: endpoints.EndpointRecord | None = None,
) -> None:
    """ADD's kernel write (the record is on disk already) through the
    caller's ``sock`` (see ``detach``).  ``previous``: the attachment's record
    before this ADD, whose identity it replaces."""
    batch = nl.Batch()
    _prepare(sock, config, batch, [r for r in records if r.key != record.key])
    if previous is not None:
        _replace_identity(batch, previous, record)
    add_default_chains(batch, record, config)
    put_items(batch, layout.endpoint_items(record.endpoint()))
    sock.commit(batch)


def _replace_identity(
    batch: nl.Batch, previous: endpoints.EndpointRecord, record: endpoints.EndpointRecord
) -> None:
    """Take out what the attachment's previous identity had and the new one
    has not (other addresses, another interface, a family fewer): left in,
    those elements would keep the pod's chains busy and its DEL would fail."""
    new = record.endpoint()
    kept = {item[:3] for item in layout.endpoint_items(new)}
    old = previous.endpoint()
    stale = [item for item in layout.endpoint_items(old, shared=False) if item[:3] not in kept]
    layout.remove_items(batch, stale)
    for family in model.FAMILIES:
        if old.sources(family) and not new.sources(family):
            for chain in policy_chain_names(record.containerID, record.ifName, family):
                obj.destroy_chain(batch, layout.INET, layout.TABLE, chain)


def _own_items(sock: nl.Netlink, container_id: str, ifname: str) -> list[layout.Item]:
    """A pod's map elements found in the kernel (whatever its record says)."""
    mine = {
        layout.chain_name(chain, family)
        for family in model.FAMILIES
        for chain in (
            names.ingress_chain(container_id, ifname),
            names.egress_chain(container_id, ifname),
        )
    }
    items: list[layout.Item] = []
    for set_name in ("from4", "from6", "to4", "to6"):
        for element in kernel.elements(sock, layout.INET, set_name):
            if element.verdict is not None and element.verdict[1] in mine:
                items.append((layout.INET, set_name, element.key, None))
                if set_name.startswith("from"):
                    items.append((layout.INET, f"owned{set_name[-1]}", element.key, None))
    return items


def detach(
    config: PluginConfig,
    container_id: str,
    ifname: str,
    record: endpoints.EndpointRecord | None,
    records: Sequence[endpoints.EndpointRecord],
    sock: nl.Netlink,
) -> list[str]:
    """DEL's kernel write (``records``: the others; the caller removes the
    pod's record after it).  Returns the pod's IPs it found (for conntrack).

    ``sock``: the caller's socket, which it closes later.  Closing a
    netfilter socket waits until the objects a transaction deleted are freed
    (an RCU grace period, 6-16 ms measured); the CNI verbs keep the socket for
    their conntrack work and close it last, so that wait overlaps the walk."""
    ips = list(record.ips) if record is not None else []
    exists, _, state = table_state(sock)
    if exists:
        _check_owner(config, state)
    batch = nl.Batch()
    if not records:  # the last pod: a node without pods carries no podwall trace
        if exists:
            obj.destroy_table(batch, layout.INET, layout.TABLE)
            obj.destroy_table(batch, layout.BRIDGE, layout.TABLE)
            sock.commit(batch)
        return ips
    _prepare(sock, config, batch, records)
    if exists:  # the record's elements and any other that jumps to its chains
        items = _own_items(sock, container_id, ifname)
        if record is not None:
            items += layout.endpoint_items(record.endpoint(), shared=False)
        layout.remove_items(batch, list({item[:3]: item for item in items}.values()))
        for family in model.FAMILIES:
            for chain in policy_chain_names(container_id, ifname, family):
                obj.destroy_chain(batch, layout.INET, layout.TABLE, chain)
    sock.commit(batch)
    return ips


def check(
    config: PluginConfig, record: endpoints.EndpointRecord | None, endpoint: model.Endpoint
) -> list[str]:
    """What CHECK finds missing (read-only)."""
    problems = []
    with nl.Netlink() as sock:
        exists, version, state = table_state(sock)
        if not exists:
            return ["the nftables table inet/bridge podwall is missing"]
        if version != layout.VERSION:
            problems.append(f"table inet podwall has layout {version!r}, not {layout.VERSION!r}")
        if state and state != config.state_dir:
            problems.append(f"table inet podwall belongs to stateDir {state}")
        for family in model.FAMILIES:
            if not endpoint.sources(family):
                continue
            for name in policy_chain_names(endpoint.container_id, endpoint.ifname, family)[:2]:
                if not kernel.chain_exists(sock, layout.INET, name):
                    problems.append(f"chain inet podwall {name} is missing")
        grouped: dict[tuple[int, str], list[bytes]] = {}
        for table, set_name, key, _ in layout.endpoint_items(endpoint, shared=True):
            if set_name != "closed":
                grouped.setdefault((table, set_name), []).append(key)
        for (table, set_name), wanted in sorted(grouped.items()):
            lacking = kernel.has_elements(sock, table, set_name, wanted)
            if lacking:
                where = "inet" if table == layout.INET else "bridge"
                problems.append(
                    f"{len(lacking)} element(s) of the pod missing from "
                    f"{where} podwall set {set_name}"
                )
    del record
    return problems


def sweep(config: PluginConfig, kept: Iterable[endpoints.EndpointRecord]) -> list[str]:
    """GC: remove every per-pod chain and identity element of podwall's
    tables that no kept record owns; returns the chains removed."""
    kept = list(kept)
    with nl.Netlink() as sock:
        exists, _, state = table_state(sock)
        batch = nl.Batch()
        if not kept:  # no pod left: no podwall trace
            if exists:
                _check_owner(config, state)
                obj.destroy_table(batch, layout.INET, layout.TABLE)
                obj.destroy_table(batch, layout.BRIDGE, layout.TABLE)
                sock.commit(batch)
            return []
        if not exists:
            _prepare(sock, config, batch, kept)
            sock.commit(batch)
            return []
        _check_owner(config, state)
        _prepare(sock, config, batch, kept)
        wanted_items = {
            item[:3] for record in kept for item in layout.endpoint_items(record.endpoint())
        }
        stale_items: list[layout.Item] = []
        for family, specs in ((layout.INET, layout.INET_SETS), (layout.BRIDGE, layout.BRIDGE_SETS)):
            for spec in specs:
                if spec.name == "closed":
                    continue  # the agent's to keep; a stale port in it is harmless
                for element in kernel.elements(sock, family, spec.name):
                    if (family, spec.name, element.key) not in wanted_items:
                        stale_items.append((family, spec.name, element.key, None))
        layout.remove_items(batch, stale_items)
        wanted_chains = {
            name
            for record in kept
            for family in model.FAMILIES
            for name in policy_chain_names(record.containerID, record.ifName, family)
        }
        stale = sorted(
            name
            for name in kernel.chains(sock)
            if name.startswith(f"{names.PREFIX}-") and name not in wanted_chains
        )
        main = [n for n in stale if n.split("-")[1] in ("I", "E")]
        for name in [*main, *(n for n in stale if n not in main)]:
            obj.destroy_chain(batch, layout.INET, layout.TABLE, name)
        sock.commit(batch)
        return stale


def ready() -> str:
    """'' when this node can run the nftables backend, else why not: netlink
    answers, the inet and bridge families exist, and the kernel knows the
    DESTROY messages (Linux 6.3+; DEL and GC rely on them)."""
    try:
        with nl.Netlink() as sock:
            sock.generation()
            table_state(sock)
            probe = nl.Batch()
            obj.destroy_table(probe, layout.BRIDGE, "podwall-probe-absent")
            sock.commit(probe)
    except errors.PodwallError as exc:
        return str(exc)
    return ""


def remove_all() -> bool:
    """Delete podwall's two tables (``agent --cleanup``); False when neither
    was there."""
    with nl.Netlink() as sock:
        if kernel.table_comment(sock) is None and kernel.table_comment(sock, layout.BRIDGE) is None:
            return False
        batch = nl.Batch()
        obj.destroy_table(batch, layout.INET, layout.TABLE)
        obj.destroy_table(batch, layout.BRIDGE, layout.TABLE)
        sock.commit(batch)
    return True
