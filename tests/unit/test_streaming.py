"""Row batches from a folder of Parquet or CSV files into XGBoost, in memory or external memory."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from nova.errors import DataError
from nova_trainer.streaming import StoreBatches, build_matrix, train_from_store, wants_external

PARAMS = {"tree_method": "hist", "max_depth": 3, "nthread": 1, "objective": "binary:logistic", "verbosity": 0}


def table(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 5)).astype("float32")
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(5)])
    frame["y"] = (X[:, 0] + 0.5 * X[:, 1] > 0).astype("float32")
    return frame


@pytest.fixture
def folder(tmp_path):
    parts = [table(3000, seed) for seed in range(3)]
    for i, part in enumerate(parts):
        part.to_parquet(tmp_path / f"part-{i}.parquet")
    return tmp_path, pd.concat(parts, ignore_index=True)


def test_batches_cover_every_row_once_in_order(folder):
    path, whole = folder
    it = StoreBatches(str(path), "y", batch_rows=1000)
    assert it.feature_names == ["f0", "f1", "f2", "f3", "f4"] and it.count_rows() == 9000
    matrix = xgb.QuantileDMatrix(it, max_bin=64)
    assert matrix.num_row() == 9000 and it.rows == 9000
    np.testing.assert_array_equal(matrix.get_label(), whole["y"].to_numpy())


@pytest.mark.parametrize("external", ["never", "always"])
def test_streamed_models_match_the_in_memory_one(folder, external, tmp_path_factory):
    path, whole = folder
    booster, kind = train_from_store(str(path), "y", PARAMS, 10, external=external,
                                     cache_dir=str(tmp_path_factory.mktemp("cache")))
    assert kind == ("ExtMemQuantileDMatrix" if external == "always" else "QuantileDMatrix")
    reference = xgb.train(PARAMS, xgb.QuantileDMatrix(whole.drop(columns="y"), whole["y"], max_bin=256), 10)
    X = xgb.DMatrix(whole.drop(columns="y").iloc[:500])
    np.testing.assert_allclose(booster.predict(X), reference.predict(X), rtol=1e-5, atol=1e-6)


def test_csv_files_stream_too(tmp_path):
    frame = table(4000)
    frame.to_csv(tmp_path / "a.csv", index=False)
    matrix, kind = build_matrix(str(tmp_path), "y", external="never", columns=["f0", "f1"])
    assert kind == "QuantileDMatrix" and matrix.num_row() == 4000 and matrix.num_col() == 2


def test_auto_goes_external_only_when_the_matrix_would_crowd_memory():
    assert not wants_external(1_000_000, 100, "auto", limit=8 << 30)
    assert wants_external(100_000_000, 100, "auto", limit=8 << 30)
    assert wants_external(10, 1, "always") and not wants_external(10**12, 100, "never")


def test_clear_errors_for_a_missing_label_or_an_empty_folder(folder, tmp_path_factory):
    path, _ = folder
    with pytest.raises(DataError, match="no label column 'target'"):
        StoreBatches(str(path), "target")
    with pytest.raises(DataError, match="no Parquet or CSV files there"):
        StoreBatches(str(tmp_path_factory.mktemp("empty")), "y")


def test_default_page_cache_goes_with_its_matrix(folder, tmp_path, monkeypatch):
    """External-memory pages are as large as the data; without a cache folder they must not outlive the matrix."""
    import gc
    import tempfile

    path, _ = folder
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    matrix, kind = build_matrix(str(path), "y", external="always", nthread=1)
    assert kind == "ExtMemQuantileDMatrix"
    (cache,) = temp.iterdir()
    assert any(cache.iterdir()), "pages are written under the temporary folder"
    xgb.train(PARAMS, matrix, 2)
    del matrix
    gc.collect()
    assert not cache.exists()
