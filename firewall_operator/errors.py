"""firewall_operator's exception hierarchy.

    OperatorError
    ├── LoadError      input files or documents cannot be read or parsed
    │   └── ClusterReadError  a live cluster cannot be read (kubeconfig, API)
    └── QuestionError  explain was asked something it cannot answer (bad endpoint)

Policy content problems are never exceptions (see ``problems.Problem``).
Foreign exceptions (OSError, yaml.YAMLError) are mapped here, causes chained.
"""

from __future__ import annotations


class OperatorError(Exception):
    """Base of every error firewall_operator raises on purpose."""


class LoadError(OperatorError):
    """A file or folder given as input cannot be read or parsed."""


class ClusterReadError(LoadError):
    """A kubeconfig cannot be used, or the API server did not answer a read."""


class QuestionError(OperatorError):
    """A question to explain names no pod, address or CIDR, or mixes families."""
