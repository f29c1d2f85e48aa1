"""Start the chart's Optuna gRPC storage proxy script as its pod runs it, on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "charts" / "nova" / "files" / "optuna_grpc_proxy.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_proxy(url: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "NOVA_STORAGE_URL": url, "NOVA_PROXY_HOST": "127.0.0.1", "NOVA_PROXY_PORT": str(port),
           "NOVA_PROXY_THREADS": "4", "NOVA_PROXY_POOL_SIZE": "2", "NOVA_PROXY_MAX_OVERFLOW": "1"}
    proc = subprocess.Popen([sys.executable, str(SCRIPT)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the proxy exited {proc.returncode}: {proc.stdout.read()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("the proxy did not listen within 30 s")


def stop(proc: subprocess.Popen) -> str:
    proc.terminate()
    out, _ = proc.communicate(timeout=20)
    return out
