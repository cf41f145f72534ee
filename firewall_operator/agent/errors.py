"""The agent's exception hierarchy (below ``firewall_operator.errors``).

    OperatorError
    └── AgentError
        ├── AgentConfigError   flags or the conflist entry cannot be used
        └── KubeApiError       an API request failed (``status`` holds the HTTP code)
            └── WatchStalledError  a watch stayed silent (no event, no bookmark) too long

aiohttp and OS errors are mapped here at the boundary (``kubeapi``), causes chained.
"""

from __future__ import annotations

from firewall_operator.errors import OperatorError


class AgentError(OperatorError):
    """Base of every error the agent raises on purpose."""


class AgentConfigError(AgentError):
    """The agent's settings are unusable."""


class KubeApiError(AgentError):
    """An API request failed; ``status`` is the HTTP status (0: no answer)."""

    def __init__(self, message: str, *, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class WatchStalledError(KubeApiError):
    """Nothing arrived on a watch for its stall window (a stopped server, a
    half-open connection, a peer that stopped acknowledging)."""
