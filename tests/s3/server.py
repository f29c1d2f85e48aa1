"""A real S3-compatible server for the tests: SeaweedFS's `weed server -s3` on loopback.

The binary is built from its Go module by `tests/s3/build.sh` (called by dev/test), cached under
~/.cache/nova. The server runs master, volume, filer and S3 gateway in one process, in a throw-away
folder, with one S3 identity (access and secret key below). It can be stopped and started again on
the same folder and ports (what the fault tests do to it). By hand:
`python -m tests.s3.server` prints the endpoint and the keys and waits.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ACCESS_KEY = "nova-test-access"
SECRET_KEY = "nova-test-secret-Zq8v4N"  # the tests grep for this value everywhere it must not be


def weed_binary() -> Path | None:
    out = subprocess.run([str(HERE / "build.sh"), "--print-bin"], capture_output=True, text=True, check=True)
    path = Path(out.stdout.strip())
    return path if path.is_file() and os.access(path, os.X_OK) else None


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """`count` ports whose gRPC twins (port + 10000, SeaweedFS's convention) are free too."""
    found: list[int] = []
    while len(found) < count:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < 50000 and port not in found and _port_free(port + 10000):
            found.append(port)
    return found


@dataclass
class S3Server:
    binary: Path
    folder: Path
    ports: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    @property
    def log_path(self) -> Path:
        return self.folder / "weed.log"

    def start(self, timeout: float = 90.0) -> None:
        if not self.ports:
            self.ports = dict(zip(("master", "volume", "filer", "s3"), free_ports(4), strict=True))
        config = self.folder / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "nova", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}))
        data = self.folder / "data"
        data.mkdir(exist_ok=True)
        p = self.ports
        argv = [str(self.binary), f"-logdir={self.folder}", "server", f"-dir={data}", "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                f"-master.port={p['master']}", f"-volume.port={p['volume']}", "-master.volumeSizeLimitMB=256",
                "-volume.max=0", "-filer", f"-filer.port={p['filer']}", "-s3", f"-s3.port={p['s3']}",
                f"-s3.config={config}"]
        log = open(self.log_path, "ab")  # noqa: SIM115 - the server's log for its whole life
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.folder,
                                     start_new_session=True)
        log.close()
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:

        deadline = time.monotonic() + timeout
        probe = f"ready-{uuid.uuid4().hex[:8]}"
        last = ""
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self.proc.returncode}: {self.tail()}")
            try:  # ready = a bucket can be made, written and removed (the volume server is up too)
                fs = self.filesystem()
                fs.create_dir(probe)
                with fs.open_output_stream(f"{probe}/x") as f:
                    f.write(b"ok")
                fs.delete_dir(probe)
                return
            except OSError as exc:
                last = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                time.sleep(0.5)
        raise RuntimeError(f"weed's S3 gateway not ready after {timeout:.0f}s ({last}): {self.tail()}")

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, 15)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(timeout=10)
        self.proc = None

    def kill(self) -> None:
        """Stop at once (SIGKILL), as a crashed server would."""
        if self.proc is not None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(timeout=10)
            self.proc = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def filesystem(self, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY):
        import pyarrow.fs as pafs

        return pafs.S3FileSystem(access_key=access_key, secret_key=secret_key, endpoint_override=self.endpoint
                                 .removeprefix("http://"), scheme="http", region="us-east-1", connect_timeout=2,
                                 request_timeout=10, allow_bucket_creation=True, allow_bucket_deletion=True,
                                 retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=1))

    def make_bucket(self, name: str | None = None) -> str:
        name = name or f"nova-{uuid.uuid4().hex[:12]}"
        self.filesystem().create_dir(name)
        return name

    def env(self) -> dict[str, str]:
        """A local user's environment for this server (what `nova run` reads)."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_ENDPOINT_URL": self.endpoint, "AWS_REGION": "us-east-1"}


def start_s3(binary: Path | None = None) -> S3Server:
    binary = binary or weed_binary()
    if binary is None:
        raise RuntimeError("no weed binary: run tests/s3/build.sh")
    server = S3Server(binary, Path(tempfile.mkdtemp(prefix="nova-s3-")))
    try:
        server.start()
    except BaseException:
        server.destroy()
        raise
    return server


if __name__ == "__main__":
    s = start_s3()
    print(f"endpoint {s.endpoint}  access key {ACCESS_KEY}  secret key {SECRET_KEY}  (Ctrl-C stops it)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        s.destroy()
