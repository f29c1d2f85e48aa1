"""Optuna gRPC storage proxy for Nova (mounted from the chart's ConfigMap, run with the trainer image).

Workers talk gRPC to a few of these (grpc://host:port; client: optuna.storages.GrpcStorageProxy)
instead of each holding database connections; each proxy holds a bounded pool. The database URL
comes from $NOVA_STORAGE_URL (a Secret reference) and is never printed.

Env: NOVA_STORAGE_URL, NOVA_PROXY_HOST (0.0.0.0), NOVA_PROXY_PORT (13000), NOVA_PROXY_THREADS (16),
NOVA_PROXY_POOL_SIZE (5), NOVA_PROXY_MAX_OVERFLOW (5)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit


def normalize(url: str) -> str:
    """Plain postgresql:// means psycopg 3 (as the operator and the trainer read it)."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def host_of(url: str) -> str:
    try:
        return urlsplit(url).hostname or "(local)"
    except ValueError:
        return "(unparsable URL)"


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("nova.optuna-proxy")
    url = os.environ.get("NOVA_STORAGE_URL")
    if not url:
        log.error("NOVA_STORAGE_URL is not set (it comes from the storage Secret)")
        return 2
    url = normalize(url)
    host = os.environ.get("NOVA_PROXY_HOST", "0.0.0.0")
    port = int(os.environ.get("NOVA_PROXY_PORT", "13000"))
    threads = int(os.environ.get("NOVA_PROXY_THREADS", "16"))

    import optuna
    from optuna.storages import RDBStorage, get_storage, run_grpc_proxy_server

    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    engine_kwargs = {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {
        "pool_size": int(os.environ.get("NOVA_PROXY_POOL_SIZE", "5")),
        "max_overflow": int(os.environ.get("NOVA_PROXY_MAX_OVERFLOW", "5")),
        "pool_pre_ping": True, "pool_recycle": 300, "connect_args": {"connect_timeout": 10}}
    try:
        storage = get_storage(RDBStorage(url, engine_kwargs=engine_kwargs))
    except Exception as exc:  # noqa: BLE001 - report the host, never the URL
        log.error("cannot open the Optuna storage at %s: %s", host_of(url), type(exc).__name__)
        return 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    log.info("serving the Optuna storage at %s on %s:%d (%d threads)", host_of(url), host, port, threads)
    run_grpc_proxy_server(storage, host=host, port=port, thread_pool=ThreadPoolExecutor(max_workers=threads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
