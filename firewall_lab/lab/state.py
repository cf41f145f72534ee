"""The lab's state file ``DIR/lab.json``: what ``down`` must undo.

Everything the lab makes is written here *before* it is made (network
namespaces, processes once started, folders), so ``down`` can remove it after
a crash, however far ``up`` got.  Writes are atomic (temp file + rename) and
serialised by a lock inside one process; only the lab process writes once it
runs (``up`` writes the first version before starting it).

Does not create or remove anything but the state file itself.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from firewall_lab.lab.errors import LabError
from firewall_lab.lab.layout import Layout

STATE_NAME = "lab.json"
PHASES = ("starting", "ready", "failed", "stopping")


@dataclass
class LabState:
    """The recorded facts of one lab."""

    lab_id: str
    nodes: int = 2
    cni: str = "bridge"
    ipv6: bool = False
    agent: str = "auto"
    upstream_policy_crds: bool = False  # the upstream CRDs installed, agents read them
    phase: str = "starting"
    error: str = ""
    api_port: int = 0
    dir_created: bool = False
    netns: list[str] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)
    agents: dict[str, str] = field(default_factory=dict)

    def layout(self, directory: str) -> Layout:
        return Layout(directory, self.lab_id, nodes=self.nodes, cni=self.cni, ipv6=self.ipv6)


def state_path(directory: str) -> str:
    return os.path.join(directory, STATE_NAME)


def load(directory: str) -> LabState:
    """The state of the lab in ``directory``; LabError when there is none."""
    try:
        with open(state_path(directory)) as handle:
            data: dict[str, Any] = json.load(handle)
    except FileNotFoundError as exc:
        raise LabError(f"no lab in {directory} (no {STATE_NAME}); run `podwall lab up`") from exc
    except (OSError, ValueError) as exc:
        raise LabError(f"cannot read {state_path(directory)}: {exc}") from exc
    known = LabState.__dataclass_fields__
    return LabState(**{key: value for key, value in data.items() if key in known})


def save(directory: str, state: LabState) -> None:
    path = state_path(directory)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as handle:
        json.dump(asdict(state), handle, indent=1, sort_keys=True)
    os.replace(tmp, path)


class Recorder:
    """The lab process's handle on its state file: every change is saved."""

    def __init__(self, directory: str, state: LabState) -> None:
        self.directory = directory
        self.state = state
        self._lock = threading.Lock()

    def netns(self, name: str) -> str:
        """Record namespace ``name`` (before creating it); returns the name."""
        with self._lock:
            if name not in self.state.netns:
                self.state.netns.append(name)
                save(self.directory, self.state)
        return name

    def forget_netns(self, name: str) -> None:
        with self._lock:
            if name in self.state.netns:
                self.state.netns.remove(name)
                save(self.directory, self.state)

    def pid(self, role: str, pid: int) -> None:
        with self._lock:
            self.state.pids[role] = pid
            save(self.directory, self.state)

    def update(self, **fields: Any) -> None:
        with self._lock:
            for key, value in fields.items():
                setattr(self.state, key, value)
            save(self.directory, self.state)
