"""Per-symbol events of prep and the trainer on one clock, so a run shows where one waits for the other.

Prep and the trainer overlap only if the trainer never waits for a shard that prep could have had
ready, and prep is never held back while the trainer needs the next one. Their logs alone cannot show
that (two processes, two log streams); with `$NOVA_TIMELINE` naming a file, both append one JSON
line per event to it (wall-clock `t`, `who`, `symbol`, `event`), O_APPEND so lines from the two
processes never interleave. Unset (the default), nothing is written. `bench/pipeline.py` reads it.

Events, in the order they happen for one symbol:
  prep:    start (building features), built (features in memory), written (shard renamed into place),
           ready (checksummed; its marker goes in place right after),
           held (before start: waited `s` seconds for the trainer to take shards, `prep.maxAhead`)
  trainer: noticed (its marker seen), loaded (read and verified), train_start (handed to the trainer),
           train_end (the trainer asked for the next symbol)
  either:  process (the command is running: imports done; `since_exec` seconds after exec)
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

ENV = "NOVA_TIMELINE"


def enabled() -> bool:
    return bool(os.environ.get(ENV))


def event(who: str, symbol: str, what: str, **extra: float | int | str) -> None:
    """Append one event; a no-op unless $NOVA_TIMELINE is set."""
    path = os.environ.get(ENV)
    if not path:
        return
    line = json.dumps({"t": time.time(), "who": who, "symbol": symbol, "event": what, **extra}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def process_started(who: str) -> None:
    """The command is past its imports; `since_exec` is how long they took (from /proc, Linux)."""
    if not enabled():
        return
    since = -1.0
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        start = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        since = round(uptime - start, 3)
    except (OSError, ValueError, IndexError):
        pass
    event(who, "", "process", since_exec=since)


def read(path: str | Path) -> list[dict]:
    """The events of a timeline file, in the order they were written."""
    p = Path(path)
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
