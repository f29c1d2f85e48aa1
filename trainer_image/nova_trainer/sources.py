"""Where a worker gets each symbol's learning data: prep shards from the sidecar, or built
in-process with the next symbols prepared on a background thread while the current one trains."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from nova.spec import ResolvedRun
from nova_trainer import timeline
from nova_trainer.dataset import SymbolData, load_symbol_data


def _built(run: ResolvedRun, symbol: str) -> SymbolData:
    timeline.event("prep", symbol, "start")
    data = load_symbol_data(run.spec, symbol)
    timeline.event("prep", symbol, "ready")
    return data


def prefetched(run: ResolvedRun, ahead: int) -> Iterator[tuple[str, SymbolData | Exception]]:
    """Build symbols in order, keeping up to `ahead` in flight ahead of the consumer."""
    symbols = list(run.spec.data.symbols)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prep") as pool:
        pending: list[tuple[str, Future]] = []
        next_index = 0
        while next_index < len(symbols) or pending:
            while next_index < len(symbols) and len(pending) < ahead + 1:
                symbol = symbols[next_index]
                pending.append((symbol, pool.submit(_built, run, symbol)))
                next_index += 1
            symbol, future = pending.pop(0)
            try:
                data = future.result()
            except Exception as exc:  # reported per symbol by the worker, never fatal to the run
                yield symbol, exc
                continue
            timeline.event("trainer", symbol, "train_start")
            yield symbol, data
            timeline.event("trainer", symbol, "train_end")


def symbol_stream(run: ResolvedRun, shards: str | None, delete: bool | None = None
                  ) -> Iterator[tuple[str, SymbolData | Exception]]:
    if shards:
        from nova_trainer.prep import consume_shards

        return consume_shards(run, shards, delete)
    return prefetched(run, run.spec.prep.max_ahead)
