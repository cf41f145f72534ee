"""Endpoint records: the node-local contract between the plugin and the agent.

At ADD the plugin writes one record per attachment under
``<stateDir>/endpoints/``, atomically (temp file in the same folder, then
rename); DEL removes it.  The agent reads them to learn which attachments
live on its node and what their identity is (host-side interface, bridge,
addresses, link-local address).

The file name is ``<containerID>_<ifname>.json`` with ``%``, ``_`` and ``/``
in either part written as ``%25``, ``%5F`` and ``%2F``: two different
(container ID, ifname) pairs never share a file (``a_b``+``c`` and
``a``+``b_c`` once did).  For the usual IDs and names nothing is escaped.

A record is data from disk and is trusted for nothing it does not have to
be: every field is validated when read (an invalid record is skipped, as if
absent), and chain names are always recomputed from (container ID, ifname),
never read back.
"""

from __future__ import annotations

import os

from firewall_plugin import addresses, jsoncodec, model, names, protocol
from firewall_plugin.errors import StateError
from firewall_plugin.values import Frozen, init_fields

TYPE_CHECKING = False  # typing costs the CNI start-up ~4 ms (see values.py)
if TYPE_CHECKING:
    from collections.abc import Iterator

ENDPOINTS_DIR = "endpoints"
_ESCAPES = (("%", "%25"), ("_", "%5F"), ("/", "%2F"))


class EndpointRecord(Frozen):
    """One CNI attachment on this node (JSON keys are the field names, camelCase)."""

    __slots__ = (
        "bridge",
        "containerID",
        "extra",
        "hostInterface",
        "ifName",
        "ips",
        "linkLocal",
        "netns",
        "podName",
        "podNamespace",
        "podUID",
    )
    containerID: str
    ifName: str
    podNamespace: str
    podName: str
    podUID: str
    ips: tuple[str, ...]
    hostInterface: str
    bridge: str
    linkLocal: str
    netns: str
    extra: dict[str, str]

    def __init__(
        self,
        containerID: str,
        ifName: str,
        podNamespace: str = "",
        podName: str = "",
        podUID: str = "",
        ips: tuple[str, ...] = (),
        hostInterface: str = "",
        bridge: str = "",
        linkLocal: str = "",
        netns: str = "",
        extra: dict[str, str] | None = None,
    ) -> None:
        init_fields(
            self,
            containerID,
            ifName,
            podNamespace,
            podName,
            podUID,
            ips,
            hostInterface,
            bridge,
            linkLocal,
            netns,
            {} if extra is None else extra,
        )

    @property
    def key(self) -> str:
        """The record's file stem (unambiguous, see the module docstring)."""
        return record_stem(self.containerID, self.ifName)

    @property
    def attachment(self) -> tuple[str, str]:
        return (self.containerID, self.ifName)

    @property
    def ingressChain(self) -> str:
        return names.ingress_chain(self.containerID, self.ifName)

    @property
    def egressChain(self) -> str:
        return names.egress_chain(self.containerID, self.ifName)

    @property
    def pod(self) -> str:
        return f"{self.podNamespace}/{self.podName}"

    def addresses(self) -> tuple[str, ...]:
        """The pod's IPs without prefix length."""
        return tuple(ip.split("/", 1)[0] for ip in self.ips)

    def endpoint(self, *, ingress_open: bool = False) -> model.Endpoint:
        """The attachment's identity as the data plane renders it."""
        return model.Endpoint(
            key=self.key,
            container_id=self.containerID,
            ifname=self.ifName,
            pod=self.pod,
            interface=self.hostInterface,
            bridge=self.bridge,
            addresses=self.addresses(),
            link_local=self.linkLocal,
            ingress_open=ingress_open,
        )

    @classmethod
    def make(cls, *, container_id: str, ifname: str, **fields: object) -> EndpointRecord:
        """A record for (``container_id``, ``ifname``) with ``fields``."""
        return cls(containerID=container_id, ifName=ifname, **fields)  # type: ignore[arg-type]

    def to_json(self) -> str:
        """The record as a JSON object, one key per line, keys sorted.  The
        chain names are written for people reading the file; podwall never
        reads them back."""
        data: dict[str, object] = self.as_dict()
        data["ips"] = list(self.ips)
        data["extra"] = dict(self.extra)
        data["ingressChain"] = self.ingressChain
        data["egressChain"] = self.egressChain
        lines = [f" {jsoncodec.dumps(key)}: {jsoncodec.dumps(data[key])}" for key in sorted(data)]
        return "{\n" + ",\n".join(lines) + "\n}"

    @classmethod
    def from_json(cls, text: str) -> EndpointRecord:
        """A validated record; ValueError when any field is not what ADD writes."""
        data = jsoncodec.loads(text)
        if not isinstance(data, dict) or "containerID" not in data or "ifName" not in data:
            raise ValueError("not an endpoint record")
        known = {key: data[key] for key in cls.__slots__ if key in data}
        for key, value in known.items():
            if key == "ips":
                if not isinstance(value, list) or not all(isinstance(ip, str) for ip in value):
                    raise ValueError("ips is not a list of strings")
            elif key == "extra":
                if not isinstance(value, dict):
                    raise ValueError("extra is not an object")
            elif not isinstance(value, str):
                raise ValueError(f"{key} is not a string")
        known["ips"] = tuple(known.get("ips", ()))
        record = cls(**known)
        validate(record)
        return record


def validate(record: EndpointRecord) -> None:
    """ValueError unless every field that reaches the kernel is well formed."""
    try:
        protocol.validate_container_id(record.containerID)
        protocol.validate_ifname(record.ifName)
        for name in (record.hostInterface, record.bridge):
            if name:
                protocol.validate_ifname(name)
    except protocol.EnvError as exc:
        raise ValueError(str(exc)) from exc
    for ip in record.ips:
        if addresses.interface(ip) != ip:
            raise ValueError(f"ip {ip!r} is not in normal form")
    if record.linkLocal and not addresses.interface(record.linkLocal).startswith("fe80:"):
        raise ValueError(f"linkLocal {record.linkLocal!r} is not an IPv6 link-local address")


def _escape(part: str) -> str:
    for raw, escaped in _ESCAPES:
        part = part.replace(raw, escaped)
    return part


def record_stem(container_id: str, ifname: str) -> str:
    return f"{_escape(container_id)}_{_escape(ifname)}"


def endpoints_dir(state_dir: str) -> str:
    return os.path.join(state_dir, ENDPOINTS_DIR)


def record_path(state_dir: str, container_id: str, ifname: str) -> str:
    return os.path.join(endpoints_dir(state_dir), record_stem(container_id, ifname) + ".json")


def write(state_dir: str, record: EndpointRecord) -> None:
    """Write ``record`` atomically (temp file + rename in the same folder)."""
    directory = endpoints_dir(state_dir)
    # unique per process (writers also hold the podwall lock); no tempfile
    # import: it costs the CNI ADD path ~3 ms of start-up
    temp = os.path.join(directory, f".tmp-{os.getpid()}-{record.key}.json")
    try:
        os.makedirs(directory, exist_ok=True)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(record.to_json())
        os.replace(temp, record_path(state_dir, record.containerID, record.ifName))
    except OSError as exc:
        raise StateError(f"cannot write endpoint record in {directory}: {exc}") from exc


def remove(state_dir: str, container_id: str, ifname: str) -> bool:
    """Remove a record; True if it existed."""
    try:
        os.unlink(record_path(state_dir, container_id, ifname))
        return True
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StateError(f"cannot remove endpoint record: {exc}") from exc


def read(state_dir: str, container_id: str, ifname: str) -> EndpointRecord | None:
    """The record of one attachment; None when absent.  StateError when the
    file is unreadable, invalid, or holds another attachment."""
    path = record_path(state_dir, container_id, ifname)
    try:
        with open(path) as handle:
            record = EndpointRecord.from_json(handle.read())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        raise StateError(f"unreadable endpoint record {container_id}/{ifname}: {exc}") from exc
    if record.attachment != (container_id, ifname):
        raise StateError(f"endpoint record {path} holds {record.containerID}/{record.ifName}")
    return record


def read_all(state_dir: str) -> Iterator[EndpointRecord]:
    """Every valid record, sorted by key; unreadable or invalid files, and
    files whose name is not their record's key, are skipped."""
    directory = endpoints_dir(state_dir)
    try:
        entries = sorted(os.listdir(directory))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.startswith(".") or not entry.endswith(".json"):
            continue
        try:  # bytes, decoded here: a text-mode file object costs more than the parse
            with open(os.path.join(directory, entry), "rb") as handle:
                record = EndpointRecord.from_json(handle.read().decode())
        except (OSError, ValueError, TypeError):  # UnicodeDecodeError is a ValueError
            continue
        if record.key + ".json" == entry:
            yield record


def stale_temp_files(state_dir: str) -> list[str]:
    """Temp files a plugin killed mid-write left behind (``.tmp-<pid>-…``)
    whose writer is gone."""
    directory = endpoints_dir(state_dir)
    try:
        entries = os.listdir(directory)
    except FileNotFoundError:
        return []
    found = []
    for entry in entries:
        if not entry.startswith(".tmp-"):
            continue
        pid = entry[5:].split("-", 1)[0]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            found.append(os.path.join(directory, entry))
    return found
