"""Data sources: one validated frame, and errors that name the symbol or file."""

import numpy as np
import pandas as pd
import pytest

from nova.errors import DataError
from nova.spec import DataSpec
from nova_trainer.data import load_bars, validate_bars
from nova_trainer.data.frame import OHLCV


def check_frame(df):
    assert list(df.columns) == OHLCV
    assert isinstance(df.index, pd.DatetimeIndex) and df.index.name == "timestamp"
    assert df.index.is_monotonic_increasing and df.index.is_unique
    assert (df[["open", "high", "low", "close"]] > 0).all().all()
    assert (df["high"] >= df[["open", "close", "low"]].max(axis=1)).all()


@pytest.mark.parametrize("symbol", ["AAPL", "IBM", "MSFT", "GOOG", "FB", "SPX", "IXIC"])
def test_bundled_symbols_are_real_and_split_adjusted(symbol):
    bars = load_bars(DataSpec(symbols=[symbol]), symbol)
    check_frame(bars)
    assert len(bars) > 150


def test_bundled_prices_are_split_adjusted():
    # AAPL split 2:1 on 2005-02-28: unadjusted, the close halves overnight.
    bars = load_bars(DataSpec(symbols=["AAPL"]), "AAPL")
    day = np.log(bars["close"]).diff().loc["2005-02-28"]
    assert abs(day) < 0.1


def test_bundled_unknown_symbol_lists_what_exists():
    with pytest.raises(DataError, match="unknown symbol 'ZZZZ'.*AAPL"):
        load_bars(DataSpec(symbols=["ZZZZ"]), "ZZZZ")


def test_synthetic_is_seeded_and_symbols_differ():
    spec = DataSpec(source="synthetic", symbols=["A", "B"], bars=600, seed=3)
    a1, a2, b = load_bars(spec, "A"), load_bars(spec, "A"), load_bars(spec, "B")
    check_frame(a1)
    pd.testing.assert_frame_equal(a1, a2)
    assert not np.allclose(a1["close"].to_numpy(), b["close"].to_numpy())
    rets = np.log(a1["close"]).diff().dropna()
    assert rets.kurt() > 0.5  # fat tails


def test_date_range_clips_and_empty_range_says_what_exists():
    spec = DataSpec(symbols=["AAPL"], start="2005-01-01", end="2005-12-31")
    bars = load_bars(spec, "AAPL")
    assert bars.index[0].year == 2005 and bars.index[-1].year == 2005
    with pytest.raises(DataError, match="no bars between 2020-01-01 .*covers 2000"):
        load_bars(DataSpec(symbols=["AAPL"], start="2020-01-01", end="2021-01-01"), "AAPL")


def make_raw(n=50):
    idx = pd.date_range("2020-01-01", periods=n, freq="D")
    close = np.linspace(10, 20, n)
    return pd.DataFrame({"date": idx, "open": close, "high": close + 1, "low": close - 1, "close": close,
                         "volume": 1000.0})


def test_file_source_folder_and_long_table(tmp_path):
    raw = make_raw()
    raw.to_csv(tmp_path / "ABC.csv", index=False)
    raw.iloc[::-1].to_parquet(tmp_path / "XYZ.parquet")  # unsorted on disk
    spec = DataSpec(source="file", uri=str(tmp_path), symbols=["ABC", "XYZ"])
    check_frame(load_bars(spec, "ABC"))
    check_frame(load_bars(spec, "XYZ"))
    long = pd.concat([raw.assign(symbol="ABC"), raw.assign(symbol="DEF")])
    table = tmp_path / "long" / "all.parquet"
    table.parent.mkdir()
    long.to_parquet(table)
    spec = DataSpec(source="file", uri=str(table), symbols=["DEF"])
    assert len(load_bars(spec, "DEF")) == len(raw)
    with pytest.raises(DataError, match="unknown symbol 'QQQ' in .*all.parquet"):
        load_bars(DataSpec(source="file", uri=str(table), symbols=["QQQ"]), "QQQ")
    with pytest.raises(DataError, match="unknown symbol 'QQQ'.*QQQ.csv"):
        load_bars(DataSpec(source="file", uri=str(tmp_path), symbols=["QQQ"]), "QQQ")


def test_broken_files_name_the_file(tmp_path):
    (tmp_path / "TRUNC.parquet").write_bytes(b"PAR1\x00\x01broken")
    with pytest.raises(DataError, match="TRUNC.parquet: cannot be read as Parquet"):
        load_bars(DataSpec(source="file", uri=str(tmp_path), symbols=["TRUNC"]), "TRUNC")
    make_raw().drop(columns=["volume"]).to_csv(tmp_path / "NOVOL.csv", index=False)
    with pytest.raises(DataError, match=r"NOVOL.*missing column\(s\) \['volume'\]"):
        load_bars(DataSpec(source="file", uri=str(tmp_path), symbols=["NOVOL"]), "NOVOL")
    (tmp_path / "EMPTY.csv").write_text("")
    with pytest.raises(DataError, match="EMPTY.csv"):
        load_bars(DataSpec(source="file", uri=str(tmp_path), symbols=["EMPTY"]), "EMPTY")


def test_validation_policy():
    raw = make_raw(100)
    dup = pd.concat([raw, raw.iloc[[10]].assign(close=99.0)])
    out = validate_bars(dup, "S", "test")
    assert len(out) == 100 and out["close"].iloc[10] == 99.0  # the last delivery wins
    nan = raw.copy()
    nan.loc[3, "close"] = np.nan
    assert len(validate_bars(nan, "S", "test")) == 99  # dropped, not filled
    many_nan = raw.copy()
    many_nan.loc[:20, "close"] = np.nan
    with pytest.raises(DataError, match="missing price"):
        validate_bars(many_nan, "S", "test")
    inf = raw.copy()
    inf.loc[5, "high"] = np.inf
    with pytest.raises(DataError, match="S \\(test\\): infinite value at 2020-01-06"):
        validate_bars(inf, "S", "test")
    neg = raw.copy()
    neg.loc[7, "low"] = -1.0
    with pytest.raises(DataError, match="non-positive price at 2020-01-08"):
        validate_bars(neg, "S", "test")
    with pytest.raises(DataError, match="no time column"):
        validate_bars(raw.drop(columns=["date"]), "S", "test")
