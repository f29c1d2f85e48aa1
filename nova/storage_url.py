"""How Nova spells Optuna storage URLs, shared by the trainer, the operator and the chart's proxy.

- `postgresql://` or `postgres://` means psycopg 3 (`postgresql+psycopg://`), as users write it.
- `grpc://host:port` is Optuna's gRPC storage proxy (optuna >= 4.2), which the chart can run in
  front of PostgreSQL so that hundreds of workers share a few database connections.
- anything else is a SQLAlchemy URL (sqlite:///... for local runs)."""

from __future__ import annotations

from urllib.parse import urlsplit

from nova.errors import StorageError

GRPC_DEFAULT_PORT = 13000


def normalize(url: str) -> str:
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def grpc_address(url: str) -> tuple[str, int] | None:
    """(host, port) of a grpc:// URL, None for any other URL."""
    if not url.startswith("grpc://"):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port or GRPC_DEFAULT_PORT
    except ValueError as exc:
        raise StorageError(f"bad gRPC storage URL ({exc}): write grpc://host:port, e.g. "
                           f"grpc://nova-optuna-proxy.nova.svc:{GRPC_DEFAULT_PORT}") from None
    if not parts.hostname or parts.path not in ("", "/"):
        raise StorageError(f"bad gRPC storage URL: write grpc://host:port, e.g. "
                           f"grpc://nova-optuna-proxy.nova.svc:{GRPC_DEFAULT_PORT}")
    return parts.hostname, port
