"""Errors a user can act on: printed as one clear message, never as a traceback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class NovaError(Exception):
    """Base for expected errors: bad input, missing data, unreachable services."""


class SpecError(NovaError):
    """The TrainingRun spec is invalid; the message names the field."""


class DataError(NovaError):
    """Market data cannot be loaded or validated; the message names the symbol or file."""


class StorageError(NovaError):
    """The Optuna storage cannot be reached or used; the message names the host, never the password.

    `permanent`: waiting will not fix it (a wrong password, a missing database), so callers stop
    retrying and tell the user; otherwise (a refused connection, a restarting server) they retry."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def run_command(command: Callable[[Any], int], args: Any, interrupted: str = "interrupted") -> int:
    """Run a CLI command: expected errors print one masked line (exit 2), Ctrl-C exits 130."""
    import sys

    from nova.secrets import mask

    try:
        return command(args)
    except NovaError as exc:
        print(f"error: {mask(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130
