"""The conflist runner's exception hierarchy, drawn here once.

    CniRunnerError
    ├── ConfigLoadError      (firewall_lab.cni_conf) a conflist is unusable
    ├── PluginNotFoundError  no executable of that type on CNI_PATH
    ├── PluginError          the plugin failed: ``code``, ``msg``, ``details``
    │   └── PluginTimeoutError  it did not finish in time (killed; code None)
    └── CacheError           the result cache cannot be read or written

Pure: no I/O.
"""

from __future__ import annotations


class CniRunnerError(Exception):
    """Base of every error the conflist runner raises.  ``cleanup_errors``
    holds what failed while cleaning up after it (a rolled-back ADD, the
    other plugins of a DEL or GC)."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.cleanup_errors: list[CniRunnerError] = []


class PluginNotFoundError(CniRunnerError):
    """No executable named after the plugin type exists on CNI_PATH."""


class CacheError(CniRunnerError):
    """The result cache could not be read or written."""


class PluginError(CniRunnerError):
    """A plugin exited non-zero.  ``code``/``msg``/``details`` come from its
    CNI error JSON (``code`` is None when it printed none)."""

    def __init__(
        self,
        *,
        plugin: str,
        command: str,
        code: int | None,
        msg: str,
        details: str = "",
        stderr: str = "",
    ) -> None:
        self.plugin = plugin
        self.command = command
        self.code = code
        self.msg = msg
        self.details = details
        self.stderr = stderr
        text = f"{plugin} {command} failed (code {code}): {msg}"
        super().__init__(text + (f" ({details})" if details else ""))


class PluginTimeoutError(PluginError):
    """A plugin ran longer than the runner's timeout and was killed."""
