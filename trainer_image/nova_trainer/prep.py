"""The CPU prep sidecar and its consumer: features are ready before the trainer asks for them.

Producer (`nova-trainer prep`): for each symbol in the spec's order, build features and target and
write `<symbol>.arrow` (Arrow IPC / Feather v2, uncompressed: written 25x and read as fast as
snappy Parquet, bench/pipeline.py) atomically (temp file, rename), then a ready marker
`<symbol>.ready` (JSON: rows, feature names, sha256 of the shard). A symbol that cannot be prepared
gets `<symbol>.failed` with the reason; the trainer skips it and the run does not hang. At most
`prep.maxAhead` shards wait untaken (`<symbol>.taken`: a trainer has loaded it), so disk and memory stay
bounded. `_done` marks the end.
As a Kubernetes native sidecar (restartPolicy Always) it must not exit when done (the kubelet
would restart it): `--linger` keeps it alive until SIGTERM, on which it exits 0 at once; a restart
skips symbols whose marker is already there.

Consumer (`consume_shards`): waits for each symbol's marker in order (a sleeping poll, never a
spin), fails clearly after `prep.waitTimeoutSeconds`, verifies the checksum, and, when the spec
says so, deletes the shard once the trainer has moved on (`<symbol>.consumed` tells the producer).

What keeps the two overlapping (issue 19; bench/pipeline.py prints both processes' timeline):
- No fsync anywhere in this folder. It is an emptyDir that lives and dies with the pod (locally,
  `nova run` clears it at each start), so a machine crash takes the folder with it and durability
  buys nothing; each fsync of a 200 MB shard waited on the disk, and on ext4 even a small marker's
  fsync flushed the shard renamed just before it (auto_da_alloc), on the trainer's critical path.
  Rename alone keeps every file whole or absent to the other process.
- The checksum is computed over a memory map of the page cache, on both sides, and the trainer
  reads the Arrow table from that same map: each shard is read once, never copied by read().
- Both sides poll every 50 ms (a stat of a few files: nothing next to training), so a shard is
  noticed within 50 ms of its marker and prep sees a `.taken` as fast.
- Each process sizes Arrow's threads (and XGBoost's, `nova_trainer.cpus`) by its own container's
  CPU, so prep's conversions do not take the trainer's core.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
from pyarrow import feather

from nova.errors import DataError, NovaError
from nova.spec import ResolvedRun
from nova_trainer import stopping, timeline
from nova_trainer.cpus import budget
from nova_trainer.dataset import SymbolData, from_frame, load_symbol_data, to_frame

log = logging.getLogger(__name__)

POLL_SECONDS = 0.05
DONE = "_done"


SHARD = "arrow"  # the shard file's suffix, and its key in `_paths`


class Stop(Exception):
    """SIGTERM: stop now; whatever was half-written stays invisible (temp files only)."""


def _paths(folder: Path, symbol: str) -> dict[str, Path]:
    return {k: folder / f"{symbol}.{k}" for k in (SHARD, "ready", "failed", "taken", "consumed")}


def sha256(path: Path) -> str:
    """The shard's digest, hashed straight from the page cache through a memory map."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return hashlib.sha256(b"").hexdigest()
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as view:
            return hashlib.sha256(view).hexdigest()


def _use_own_cpus() -> None:
    """Arrow's thread pool as large as this container's CPU, not the node's (see the module doc)."""
    pa.set_cpu_count(budget())


def _temp_beside(path: Path) -> Path:
    """A temporary name no other writer uses: local workers share one folder and write the same
    markers (`.taken`, `.consumed`), so one fixed temp name let one writer's rename steal the
    other's file (FileNotFoundError). Hidden (leading dot) and `.tmp`, so readers and the prep
    clean-up know it."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    return Path(name)


def _atomic_text(path: Path, text: str) -> None:
    """Write a marker whole or not at all; writing the same marker twice, from two writers at
    once, is harmless (the last rename wins and both wrote the same meaning)."""
    tmp = _temp_beside(path)
    try:
        tmp.write_text(text)
        os.replace(tmp, path)  # no fsync: see the module doc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_shard(folder: Path, data: SymbolData) -> dict:
    paths = _paths(folder, data.symbol)
    tmp = _temp_beside(paths[SHARD])
    feather.write_feather(pa.Table.from_pandas(to_frame(data), preserve_index=True), tmp,
                          compression="uncompressed")
    os.replace(tmp, paths[SHARD])  # no fsync: see the module doc
    timeline.event("prep", data.symbol, "written")
    marker = {"symbol": data.symbol, "rows": int(len(data.y)), "features": list(data.X.columns),
              "sha256": sha256(paths[SHARD]), "start": data.start, "end": data.end}
    timeline.event("prep", data.symbol, "ready")  # before the marker, so it precedes the trainer's "noticed"
    _atomic_text(paths["ready"], json.dumps(marker))
    return marker


def _pending(folder: Path, symbols: list[str]) -> int:
    """Shards written that no trainer has taken yet: the symbols prepared ahead."""
    return sum(1 for s in symbols if (folder / f"{s}.ready").exists() and not (folder / f"{s}.taken").exists())


def produce(run: ResolvedRun, folder: Path, max_ahead: int | None = None, stop_check=lambda: False) -> dict[str, str]:
    """Prepare every symbol; return {symbol: 'ready'|'failed: reason'}."""
    folder.mkdir(parents=True, exist_ok=True)
    _use_own_cpus()
    symbols = list(run.spec.data.symbols)
    ahead = max_ahead or run.spec.prep.max_ahead
    outcome: dict[str, str] = {}
    for symbol in symbols:
        if stop_check():
            raise Stop
        paths = _paths(folder, symbol)
        if paths["ready"].exists() or paths["failed"].exists() or paths["consumed"].exists():
            outcome[symbol] = "ready" if not paths["failed"].exists() else "failed (earlier)"
            continue
        held = time.perf_counter()
        while _pending(folder, symbols) >= ahead:
            if stop_check():
                raise Stop
            time.sleep(POLL_SECONDS)
        t0 = time.perf_counter()
        if t0 - held > POLL_SECONDS / 2:
            timeline.event("prep", symbol, "held", s=round(t0 - held, 3))
        timeline.event("prep", symbol, "start")
        try:
            data = load_symbol_data(run.spec, symbol)
            timeline.event("prep", symbol, "built")
            write_shard(folder, data)
            outcome[symbol] = "ready"
            log.info("%s: prepared %d rows x %d features in %.2fs", symbol, len(data.y), data.X.shape[1],
                     time.perf_counter() - t0)
        except Stop:
            raise
        except Exception as exc:  # any failure is reported for this symbol, the rest go on
            reason = str(exc) if isinstance(exc, NovaError) else f"{type(exc).__name__}: {exc}"
            _atomic_text(paths["failed"], json.dumps({"symbol": symbol, "reason": reason}))
            outcome[symbol] = f"failed: {reason}"
            log.error("%s: cannot be prepared: %s", symbol, reason)
    _atomic_text(folder / DONE, json.dumps(outcome))
    return outcome


def _wait_for(paths: dict[str, Path], folder: Path, symbol: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        for kind in ("ready", "failed"):
            if paths[kind].exists():
                return kind
        if (folder / DONE).exists():  # prep finished without this symbol: it never will
            return "missing"
        if time.monotonic() > deadline:
            return "timeout"
        stopping.wait(POLL_SECONDS)


def load_shard(folder: Path, symbol: str) -> SymbolData:
    paths = _paths(folder, symbol)
    marker = json.loads(paths["ready"].read_text())
    if not paths[SHARD].exists():
        raise DataError(f"{symbol}: shard {paths[SHARD]} is missing although its ready marker exists")
    with pa.memory_map(str(paths[SHARD]), "r") as source:  # read once: hashed and parsed from one map
        view = source.read_buffer()
        if hashlib.sha256(view).hexdigest() != marker["sha256"]:
            raise DataError(f"{symbol}: shard {paths[SHARD]} is corrupted (checksum mismatch); "
                            "delete it and its .ready marker to rebuild it")
        try:
            frame = pa.ipc.open_file(view).read_all().to_pandas()
        except Exception as exc:
            raise DataError(f"{symbol}: shard {paths[SHARD]} cannot be read ({exc})") from None
    return from_frame(frame, symbol)


def consume_shards(run: ResolvedRun, folder: str | Path, delete: bool | None = None
                   ) -> Iterator[tuple[str, SymbolData | Exception]]:
    folder = Path(folder)
    delete = run.spec.prep.delete_after_use if delete is None else delete
    timeout = run.spec.prep.wait_timeout_seconds
    _use_own_cpus()
    for symbol in run.spec.data.symbols:
        paths = _paths(folder, symbol)
        state = _wait_for(paths, folder, symbol, timeout)
        timeline.event("trainer", symbol, "noticed", state=state)
        if state == "failed":
            reason = json.loads(paths["failed"].read_text()).get("reason", "unknown")
            yield symbol, DataError(f"{symbol}: prep failed: {reason}")
            continue
        if state in ("timeout", "missing"):
            why = (f"no shard after {timeout}s (prep.waitTimeoutSeconds); is the prep container running? "
                   "see its log") if state == "timeout" else "prep finished without preparing it"
            yield symbol, DataError(f"{symbol}: {why}")
            continue
        try:
            data = load_shard(folder, symbol)
        except DataError as exc:
            yield symbol, exc
            continue
        timeline.event("trainer", symbol, "loaded")
        _atomic_text(paths["taken"], "")  # the producer may now prepare one more ahead
        timeline.event("trainer", symbol, "train_start")
        yield symbol, data
        timeline.event("trainer", symbol, "train_end")
        # The trainer is done with this symbol once it asks for the next one.
        _atomic_text(paths["consumed"], "")
        if delete:
            paths[SHARD].unlink(missing_ok=True)
