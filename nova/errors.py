"""Errors a user can act on: printed as one clear message, never as a traceback."""


class NovaError(Exception):
    """Base for expected errors: bad input, missing data, unreachable services."""


class SpecError(NovaError):
    """The TrainingRun spec is invalid; the message names the field."""


class DataError(NovaError):
    """Market data cannot be loaded or validated; the message names the symbol or file."""


class StorageError(NovaError):
    """The Optuna storage cannot be reached or used; the message names the host, never the password."""
