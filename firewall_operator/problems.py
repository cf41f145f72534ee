"""``Problem``: an input object podwall could not use as written, and why.

Problems are data, never exceptions: the compiler reports them and carries on
with everything else.  ``error`` problems make a policy fail closed; ``warning``
problems (a named port no pod has) change nothing but deserve a look.

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True, order=True)
class Problem:
    """``kind`` and ``name`` (with ``namespace`` for namespaced kinds) name the object."""

    kind: str
    namespace: str
    name: str
    reason: str
    severity: Severity = "error"

    @property
    def object_name(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    def __str__(self) -> str:
        return f"{self.severity}: {self.kind} {self.object_name}: {self.reason}"
