"""A real PostgreSQL for the tests: Debian's server, a throw-away cluster on loopback.

Installs `postgresql` with apt-get when no server binaries are found, runs `initdb` into a temporary
folder (as the `postgres` user when we are root: the server refuses to run as root), starts it on a
free loopback port with password authentication, and stops it afterwards. Used by pytest fixtures,
by `.ci/run` through them, and by hand: `python -m tests.support.postgres` prints a URL and waits.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

PASSWORD = "nova-test-pw"
USER = "nova"


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        if os.geteuid() != 0:
            raise RuntimeError("PostgreSQL server binaries not found; install Debian's 'postgresql' package")
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "postgresql"], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresServer:
    data_dir: Path
    port: int
    bin_dir: Path
    _as_postgres: bool

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{USER}:{PASSWORD}@127.0.0.1:{self.port}/nova"

    def url_for(self, database: str) -> str:
        return f"postgresql+psycopg://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def _run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        argv = list(cmd)
        if self._as_postgres:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        return subprocess.run(argv, check=check, capture_output=True, text=True)

    def start(self) -> None:
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.data_dir / "log"),
                  # fsync off: the tests crash the server process, never the kernel, so what reached
                  # the page cache survives. synchronous_commit stays on: with it off an acknowledged
                  # commit can die in WAL buffers on `restart()` (an immediate stop), and a trial that
                  # a worker saw COMPLETE came back RUNNING, then FAIL (seen once in CI-like runs);
                  # production PostgreSQL keeps it on too.
                  "-o", f"-p {self.port} -k {self.data_dir} -c listen_addresses=127.0.0.1 "
                        "-c fsync=off -c full_page_writes=off -c max_connections=300",
                  "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop", check=False)

    def restart(self) -> None:
        self.stop("immediate")
        self.start()

    def create_database(self, name: str) -> str:
        self.psql(f'CREATE DATABASE "{name}" OWNER {USER}')
        return self.url_for(name)

    def psql(self, sql: str, database: str = "postgres") -> str:
        out = self._run(str(self.bin_dir / "psql"), "-h", str(self.data_dir), "-p", str(self.port),
                        "-U", "postgres", "-d", database, "-Atc", sql)
        return out.stdout.strip()

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)


def start_postgres() -> PostgresServer:
    bin_dir = _bin_dir()
    as_postgres = os.geteuid() == 0
    data_dir = Path(tempfile.mkdtemp(prefix="nova-pg-"))
    if as_postgres:
        shutil.chown(data_dir, "postgres", "postgres")
    server = PostgresServer(data_dir, free_port(), bin_dir, as_postgres)
    pwfile = data_dir / "pw"
    pwfile.write_text(PASSWORD)
    if as_postgres:
        shutil.chown(pwfile, "postgres", "postgres")
    server._run(str(bin_dir / "initdb"), "-D", str(data_dir / "db"), "-U", "postgres", "-A", "trust",
                "--auth-host=scram-sha-256", "--auth-local=trust", "--pwfile", str(pwfile), "-E", "UTF8")
    server.data_dir = data_dir / "db"
    server.start()
    server.psql(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}' CREATEDB")
    server.psql(f"CREATE DATABASE nova OWNER {USER}")
    return server


if __name__ == "__main__":
    pg = start_postgres()
    print(pg.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pg.destroy()


class ConnectionSampler(threading.Thread):
    """Counts one database's connections in pg_stat_activity every `every` seconds (benchmarks)."""

    def __init__(self, server: PostgresServer, database: str, every: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.server, self.database, self.every = server, database, every
        self.samples: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        import psycopg

        with psycopg.connect(host=str(self.server.data_dir), port=self.server.port, user="postgres",
                             dbname="postgres", autocommit=True) as conn:
            while not self.stop.is_set():
                (n,), = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                                     (self.database,)).fetchall()
                self.samples.append(int(n))
                self.stop.wait(self.every)

    def finish(self) -> dict:
        self.stop.set()
        self.join(5)
        s = self.samples or [0]
        return {"peak": max(s), "mean": round(sum(s) / len(s), 1), "samples": len(self.samples)}
