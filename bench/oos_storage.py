"""How to keep every trial's out-of-sample returns: size of 1,000 trials x 5 folds x 250 bars in
each encoding, and in a real Optuna SQLite study as trial attributes (what Nova does) against a
file next to the model.

    python bench/oos_storage.py
"""

from __future__ import annotations

import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write_result  # noqa: E402

from nova_trainer.evaluation.oos import OutOfSample  # noqa: E402

TRIALS, FOLDS, BARS = 1000, 5, 250


def main() -> None:
    rng = np.random.default_rng(0)
    n = FOLDS * BARS
    fwd = rng.standard_normal(n) * 0.01
    dates = np.arange("2010-01-01", n, dtype="datetime64[D]").astype("datetime64[ns]")
    # Real models flip position less often than a coin: runs of a few bars.
    positions = [np.repeat(np.where(rng.random(n) > 0.5, 1, -1), rng.integers(1, 6))[:n].astype("int8")
                 for _ in range(TRIALS)]
    positions = [np.resize(p, n) for p in positions]
    returns = [p * fwd for p in positions]
    sizes = {
        "json float64 returns per trial": sum(len(json.dumps(r.tolist())) for r in returns),
        "base64 float32 returns per trial": TRIALS * ((4 * n + 2) // 3 * 4),
        "zlib+base64 int8 positions per trial (Nova)": sum(
            len(json.dumps(OutOfSample(p, fwd, dates, [BARS] * FOLDS).trial_attr())) for p in positions),
        "shared bars, once per study (Nova)": len(json.dumps(OutOfSample(positions[0], fwd, dates,
                                                                         [BARS] * FOLDS).study_attr())),
    }
    buf = io.BytesIO()
    np.savez_compressed(buf, returns=np.stack(returns).astype("float32"))
    sizes["npz float32 file next to the model"] = buf.getbuffer().nbytes

    with tempfile.TemporaryDirectory() as tmp:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        base_db = Path(tmp) / "base.db"
        nova_db = Path(tmp) / "nova.db"
        for db, keep in ((base_db, False), (nova_db, True)):
            study = optuna.create_study(storage=f"sqlite:///{db}", study_name="s")
            spent = 0.0
            for i, p in enumerate(positions):
                trial = study.ask()
                if keep:
                    t0 = time.perf_counter()
                    trial.set_user_attr("oos", OutOfSample(p, fwd, dates, [BARS] * FOLDS).trial_attr())
                    spent += time.perf_counter() - t0
                study.tell(trial, float(i))
            if keep:
                study.set_user_attr("oos_bars", OutOfSample(positions[0], fwd, dates, [BARS] * FOLDS).study_attr())
                write_s = spent
                t0 = time.perf_counter()
                loaded = optuna.load_study(study_name="s", storage=f"sqlite:///{db}").get_trials(deepcopy=False)
                read_s = time.perf_counter() - t0
        sqlite_added = nova_db.stat().st_size - base_db.stat().st_size
    rows = [[k, v, round(v / 1e6, 3)] for k, v in sizes.items()]
    rows.append(["SQLite study grown by (1,000 trials' attributes)", sqlite_added, round(sqlite_added / 1e6, 3)])
    print(f"{TRIALS} trials x {FOLDS} folds x {BARS} bars")
    print(table(["encoding", "bytes", "MB"], rows))
    print(f"encoding + storing 1,000 records: {write_s:.2f} s ({write_s:.1f} ms per trial); "
          f"reading every trial back: {read_s:.2f} s "
          f"({len(loaded)} trials)")
    write_result("oos_storage", {"trials": TRIALS, "folds": FOLDS, "bars": BARS, "bytes": sizes,
                                 "sqlite_bytes_added": sqlite_added, "write_s": write_s, "read_s": read_s,
                                 "choice": "trial attribute (int8 positions, zlib+base64) + shared bars "
                                           "as a study attribute"})


if __name__ == "__main__":
    main()
