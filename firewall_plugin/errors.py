"""podwall's data-plane exception hierarchy.

    PodwallError
    ├── ConfigError        bad plugin configuration (CNI code 7)
    ├── BackendError       a kernel write or read failed
    │   └── TryAgainError  lock or kernel busy; the caller may retry (CNI code 11)
    └── StateError         endpoint records or run files unusable

Foreign exceptions (OSError, CalledProcessError, iptc errors) are mapped to
these at the module that called the foreign code, with the cause chained.
"""

from __future__ import annotations


class PodwallError(Exception):
    """Base of every error podwall's data plane raises on purpose."""


class ConfigError(PodwallError):
    """The configuration is missing a value or holds a wrong one."""


class BackendError(PodwallError):
    """Reading or writing the kernel's rules or sets failed."""


class TryAgainError(BackendError):
    """A transient condition (a lock held too long, EAGAIN); retrying may work."""


class StateError(PodwallError):
    """Endpoint records or run-time files are unreadable or inconsistent."""
