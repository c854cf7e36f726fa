"""Errors a user can act on: the CLI and kernels print them as one line."""

from __future__ import annotations

__all__ = ["UsageError"]


class UsageError(Exception):
    """Bad input (flags, sizes, paths, devices): reported as one line, exit status 2."""
