"""The lab's exceptions: one hierarchy, mapped to messages at the CLI."""

from __future__ import annotations


class LabError(Exception):
    """The lab could not do what was asked; the message says why."""


class LabTimeout(LabError):
    """Something the lab waits for did not happen in time."""
