"""Endpoint records: the node-local contract between the plugin and the agent.

At ADD the plugin writes ``<stateDir>/endpoints/<containerID>_<ifname>.json``
atomically (temp file in the same folder, then rename); DEL removes it.  The
agent reads them to learn which attachments live on its node.
"""

from __future__ import annotations

import os

from firewall_plugin import jsoncodec, names
from firewall_plugin.errors import StateError
from firewall_plugin.values import Frozen, init_fields

TYPE_CHECKING = False  # typing costs the CNI start-up ~4 ms (see values.py)
if TYPE_CHECKING:
    from collections.abc import Iterator

ENDPOINTS_DIR = "endpoints"


class EndpointRecord(Frozen):
    """One CNI attachment on this node (JSON keys are the field names, camelCase)."""

    __slots__ = (
        "containerID",
        "egressChain",
        "extra",
        "hostInterface",
        "ifName",
        "ingressChain",
        "ips",
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
    netns: str
    ingressChain: str
    egressChain: str
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
        netns: str = "",
        ingressChain: str = "",
        egressChain: str = "",
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
            netns,
            ingressChain,
            egressChain,
            {} if extra is None else extra,
        )

    @property
    def key(self) -> str:
        """``<containerID>_<ifname>``: the record's file stem."""
        return record_stem(self.containerID, self.ifName)

    @property
    def attachment(self) -> tuple[str, str]:
        return (self.containerID, self.ifName)

    @classmethod
    def make(cls, *, container_id: str, ifname: str, **fields: object) -> EndpointRecord:
        """A record whose chain names derive from container ID and ifname."""
        return cls(
            containerID=container_id,
            ifName=ifname,
            ingressChain=names.ingress_chain(container_id, ifname),
            egressChain=names.egress_chain(container_id, ifname),
            **fields,  # type: ignore[arg-type]
        )

    def to_json(self) -> str:
        """The record as a JSON object, one key per line, keys sorted."""
        data = self.as_dict()
        data["ips"] = list(self.ips)
        data["extra"] = dict(self.extra)
        lines = [f" {jsoncodec.dumps(key)}: {jsoncodec.dumps(data[key])}" for key in sorted(data)]
        return "{\n" + ",\n".join(lines) + "\n}"

    @classmethod
    def from_json(cls, text: str) -> EndpointRecord:
        data = jsoncodec.loads(text)
        if not isinstance(data, dict) or "containerID" not in data or "ifName" not in data:
            raise ValueError("not an endpoint record")
        known = {key: data[key] for key in cls.__slots__ if key in data}
        known["ips"] = tuple(known.get("ips", ()))
        return cls(**known)


def record_stem(container_id: str, ifname: str) -> str:
    return f"{container_id}_{ifname}"


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
    try:
        with open(record_path(state_dir, container_id, ifname)) as handle:
            return EndpointRecord.from_json(handle.read())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        raise StateError(f"unreadable endpoint record {container_id}/{ifname}: {exc}") from exc


def read_all(state_dir: str) -> Iterator[EndpointRecord]:
    """Every readable record, sorted by key; unreadable files are skipped."""
    directory = endpoints_dir(state_dir)
    try:
        entries = sorted(os.listdir(directory))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.startswith(".") or not entry.endswith(".json"):
            continue
        try:
            with open(os.path.join(directory, entry)) as handle:
                yield EndpointRecord.from_json(handle.read())
        except (OSError, ValueError, TypeError):
            continue
