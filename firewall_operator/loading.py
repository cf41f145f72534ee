"""Read Kubernetes YAML/JSON files and folders into a ``cluster.Snapshot``.

Files hold one or more documents (``---``), possibly ``kind: List``; folders
are read recursively, files ending in ``.yaml``, ``.yml`` or ``.json``, in
name order; ``read_stream`` reads one open stream (standard input for ``-f -``).
This module does file I/O only; it never talks to a cluster.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TextIO

import yaml

from firewall_operator.cluster import Snapshot
from firewall_operator.errors import LoadError

SUFFIXES = (".yaml", ".yml", ".json")


def _files(path: str) -> list[str]:
    if os.path.isdir(path):
        found = []
        for root, dirs, files in os.walk(path):
            dirs.sort()
            found += [os.path.join(root, f) for f in sorted(files) if f.endswith(SUFFIXES)]
        return found
    if not os.path.exists(path):
        raise LoadError(f"{path}: no such file or folder")
    return [path]


def read_documents(paths: Iterable[str]) -> list[object]:
    """Every document of every file under ``paths`` (empty documents dropped)."""
    docs: list[object] = []
    for path in paths:
        for name in _files(path):
            try:
                with open(name) as handle:
                    docs += [doc for doc in yaml.safe_load_all(handle) if doc is not None]
            except OSError as exc:
                raise LoadError(f"{name}: {exc.strerror}") from exc
            except yaml.YAMLError as exc:
                raise LoadError(f"{name}: not valid YAML: {exc}") from exc
    return docs


def read_stream(stream: TextIO, name: str) -> list[object]:
    """Every document of an open stream (``name`` for messages)."""
    try:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]
    except yaml.YAMLError as exc:
        raise LoadError(f"{name}: not valid YAML: {exc}") from exc
    except OSError as exc:
        raise LoadError(f"{name}: {exc.strerror}") from exc


def load_snapshot(paths: Iterable[str]) -> Snapshot:
    """The snapshot of the objects in ``paths``."""
    return Snapshot.from_documents(read_documents(paths))
