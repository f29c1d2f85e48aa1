"""How the operator and the trainer judge an Optuna storage error: transient (wait and retry) or
permanent (tell the user), and how they describe it (the driver's first line, password masked).

The contract imports no driver: an exception of a library that was never imported cannot exist,
so each check looks the library up in `sys.modules` and skips it when absent."""

from __future__ import annotations

import sys

from nova.errors import StorageError
from nova.secrets import host_of, mask

# a driver message with one of these will not change by waiting
PERMANENT_HINTS = ("password authentication failed", "does not exist", "no password supplied",
                   "permission denied", 'role "')
# a gRPC proxy restarting (UNAVAILABLE), slow (DEADLINE_EXCEEDED) or its database failing (UNKNOWN)
TRANSIENT_GRPC_CODES = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "UNKNOWN")


def _grpc_code(exc: BaseException) -> str | None:
    grpc = sys.modules.get("grpc")
    if grpc is None or not isinstance(exc, grpc.RpcError):
        return None
    code = exc.code()  # grpc.Call's method, on every RpcError grpc raises
    return code.name if code is not None else "UNKNOWN"


def is_driver_error(exc: BaseException) -> bool:
    """A database (SQLAlchemy), Optuna-storage or gRPC-proxy error, as opposed to a bug."""
    sa = sys.modules.get("sqlalchemy.exc")
    if sa is not None and isinstance(exc, sa.SQLAlchemyError):
        return True
    optuna_exc = sys.modules.get("optuna.exceptions")
    if optuna_exc is not None and isinstance(exc, optuna_exc.StorageInternalError):
        return True
    return _grpc_code(exc) is not None


def is_transient(exc: BaseException) -> bool:
    """A database or proxy error that may go away if we wait (this exception, not its chain).
    Optuna wraps a failed commit (the server restarting under it) in StorageInternalError."""
    sa = sys.modules.get("sqlalchemy.exc")
    if sa is not None and isinstance(exc, sa.DBAPIError):  # OperationalError, InterfaceError, ...
        return not is_permanent(exc)
    optuna_exc = sys.modules.get("optuna.exceptions")
    if optuna_exc is not None and isinstance(exc, optuna_exc.StorageInternalError):
        return True
    return _grpc_code(exc) in TRANSIENT_GRPC_CODES


def is_transient_chain(exc: BaseException | None, depth: int = 10) -> bool:
    """A transient error anywhere in the chain: Optuna can surface a failed commit as another
    exception raised while it handles the first (seen: UnboundLocalError in optuna 5.0's
    `_run_trial` when the server restarts during `tell`)."""
    while exc is not None and depth > 0:
        if is_transient(exc):
            return True
        exc = exc.__cause__ or exc.__context__
        depth -= 1
    return False


def is_permanent(exc: BaseException) -> bool:
    """A wrong password or a missing database will not fix itself; a refused connection may."""
    return any(h in describe(exc) for h in PERMANENT_HINTS)


def describe(exc: BaseException) -> str:
    """The first line of the driver's message, with any password masked."""
    if (code := _grpc_code(exc)) is not None:
        return mask(f"gRPC {code}: {exc.details()}")  # type: ignore[attr-defined]  # grpc.RpcError's details() is on its Call mixin
    inner = getattr(exc, "orig", None) or exc
    text = str(inner).strip()
    return mask(text.splitlines()[0]) if text else type(inner).__name__


def storage_name(url: str) -> str:
    """What an error names: a SQLite file by its path (never "localhost"), a server by host:port."""
    if url.startswith("sqlite"):
        return url.partition(":///")[2] or "an in-memory SQLite database"
    return host_of(url)


def storage_error(url: str, exc: BaseException, doing: str = "use") -> StorageError:
    """The one-line StorageError a user sees, naming the storage (never its password)."""
    return StorageError(f"cannot {doing} the Optuna storage at {storage_name(url)}: {describe(exc)}",
                        permanent=is_permanent(exc))
