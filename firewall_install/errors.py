"""The installer's exception hierarchy.

    InstallError           the folders, flags or host cannot be worked with (exit 1)
    ├── HostError          the host cannot run the bundle (glibc too old, not found)
    └── ApiConfigError     no usable API server configuration (removal check)
    ApiUnavailable         the API server gave no HTTP answer (never fatal)

``firewall_plugin`` errors met here (``ConflistError``, ``ConfigError``) are
mapped to ``InstallError`` where the installer calls into the plugin package.
"""

from __future__ import annotations


class InstallError(Exception):
    """The conf or bin folder, a flag or the host is not in a state install can work with."""


class HostError(InstallError):
    """The host cannot run what would be installed (its glibc, its tools)."""


class ApiConfigError(InstallError):
    """No usable API server configuration (not in a cluster, bad kubeconfig)."""


class ApiUnavailable(Exception):
    """The API server gave no HTTP answer (refused, timed out, TLS failed, no token)."""
