"""firewall_operator's exception hierarchy.

    OperatorError
    └── LoadError      input files or documents cannot be read or parsed

Policy content problems are never exceptions (see ``problems.Problem``).
Foreign exceptions (OSError, yaml.YAMLError) are mapped here, causes chained.
"""

from __future__ import annotations


class OperatorError(Exception):
    """Base of every error firewall_operator raises on purpose."""


class LoadError(OperatorError):
    """A file or folder given as input cannot be read or parsed."""
