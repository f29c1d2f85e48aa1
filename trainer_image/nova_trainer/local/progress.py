"""Live progress per symbol (trials done/pruned, best so far), read from the storage like the
operator reads it: what is shown is what the studies hold, not what a process believes."""

from __future__ import annotations

import optuna
from tqdm import tqdm

from nova.spec import ResolvedRun
from nova_trainer.tuning.budget import Progress, progress


class ProgressBoard:
    def __init__(self, run: ResolvedRun, storage: optuna.storages.BaseStorage, enabled: bool = True) -> None:
        self.run, self.storage = run, storage
        self.bars = {
            s: tqdm(total=run.spec.tuning.trials, desc=f"{s:>8}", unit="trial", position=i, leave=True,
                    disable=not enabled, dynamic_ncols=True)
            for i, s in enumerate(run.spec.data.symbols)}

    def snapshot(self) -> dict[str, Progress]:
        out = {}
        for symbol in self.run.spec.data.symbols:
            study = optuna.load_study(study_name=self.run.study_name(symbol), storage=self.storage)
            out[symbol] = progress(study)
        return out

    def update(self) -> dict[str, Progress]:
        snap = self.snapshot()
        for symbol, p in snap.items():
            bar = self.bars[symbol]
            bar.n = min(p.finished, bar.total)
            best = "-" if p.best_value is None else f"{p.best_value:.4f}"
            bar.set_postfix_str(f"pruned={p.pruned} failed={p.failed} running={p.running} best={best}",
                                refresh=False)
            bar.refresh()
        return snap

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
