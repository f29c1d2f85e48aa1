"""Where a worker gets each symbol's learning data: prep shards from the sidecar, or built
in-process with the next symbols prepared on a background thread while the current one trains."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from nova.spec import ResolvedRun
from nova_trainer import cpus, timeline
from nova_trainer.dataset import SymbolData, load_symbol_data


def _built(run: ResolvedRun, symbol: str) -> SymbolData:
    timeline.event("prep", symbol, "start")
    data = load_symbol_data(run.spec, symbol)
    timeline.event("prep", symbol, "ready")
    return data


def prefetched(run: ResolvedRun, ahead: int) -> Iterator[tuple[str, SymbolData | Exception]]:
    """Build symbols in order, keeping up to `ahead` in flight ahead of the consumer."""
    symbols = list(run.spec.data.symbols)
    pending: list[tuple[str, Future]] = []
    submitted = 0

    def prep_busy() -> bool:
        return submitted < len(symbols) or any(not f.done() for _, f in pending)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prep") as pool:
        cpus.sharing_with_prep(prep_busy)  # while the thread builds, training leaves it a core
        try:
            while submitted < len(symbols) or pending:
                while submitted < len(symbols) and len(pending) < ahead + 1:
                    symbol = symbols[submitted]
                    pending.append((symbol, pool.submit(_built, run, symbol)))
                    submitted += 1
                symbol, future = pending.pop(0)
                try:
                    data = future.result()
                except Exception as exc:  # reported per symbol by the worker, never fatal to the run
                    yield symbol, exc
                    continue
                timeline.event("trainer", symbol, "train_start")
                yield symbol, data
                timeline.event("trainer", symbol, "train_end")
        finally:
            cpus.sharing_with_prep(None)


def symbol_stream(run: ResolvedRun, shards: str | None, delete: bool | None = None
                  ) -> Iterator[tuple[str, SymbolData | Exception]]:
    if shards:
        from nova_trainer.prep import consume_shards

        return consume_shards(run, shards, delete)
    return prefetched(run, run.spec.prep.max_ahead)
