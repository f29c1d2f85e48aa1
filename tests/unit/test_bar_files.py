"""Bars as users have them: real CSV files written the way exports write them, loaded through
`data.source: file`; each case is repaired as stated or refused with a message that says how to
fix it."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import talib

from nova.errors import DataError
from nova.spec import DataSpec, TrainingRunSpec
from nova_trainer.data import load_bars
from nova_trainer.dataset import build_symbol_data
from nova_trainer.features import build_features
from nova_trainer.features.calendar import local_calendar
from nova_trainer.features.engine import feature_names
from nova_trainer.features.inputs import close_only


def bars_frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    return pd.DataFrame({"open": close * (1 + rng.normal(0, 0.002, n)), "high": close * 1.01,
                         "low": close * 0.99, "close": close, "volume": rng.uniform(1e5, 1e6, n).round()})


def write_csv(tmp_path, symbol: str, dates, frame: pd.DataFrame | None = None, **columns) -> None:
    frame = (frame if frame is not None else bars_frame(len(dates))).copy()
    frame.insert(0, "Date", list(dates))
    for name, values in columns.items():
        frame[name] = values
    frame.to_csv(tmp_path / f"{symbol}.csv", index=False)


def load(tmp_path, symbol: str = "X", **spec) -> pd.DataFrame:
    return load_bars(DataSpec(source="file", uri=str(tmp_path), symbols=[symbol], **spec), symbol)


def test_daily_bars_east_of_utc_keep_their_local_date(tmp_path):
    days = pd.bdate_range("2005-01-10", periods=300)
    write_csv(tmp_path, "X", [f"{d.date()}T00:00:00+09:00" for d in days])
    bars = load(tmp_path, start="2005-01-10")
    assert bars.index[0] == pd.Timestamp("2005-01-10")  # UTC would say 2005-01-09 15:00, a Sunday
    assert (bars.index == days).all()
    dow = build_features(bars, "default")["dow_cos"]
    assert np.isclose(dow.iloc[0], 1.0, atol=1e-6)  # Monday is phase 0; the UTC date, a Sunday, is 6/7


def test_daily_instants_from_a_database_are_dated_in_data_timezone(tmp_path):
    days = pd.bdate_range("2005-01-10", periods=300)
    frame = bars_frame(300)
    frame.insert(0, "timestamp", (days.tz_localize("Asia/Tokyo")).tz_convert("UTC"))  # as timestamptz returns
    frame.to_parquet(tmp_path / "X.parquet")
    assert load(tmp_path).index[0] == pd.Timestamp("2005-01-09")  # the UTC date, without a zone to say
    assert (load(tmp_path, timezone="Asia/Tokyo").index == days).all()


def test_intraday_bars_keep_their_instant_and_calendar_reads_the_exchange_clock(tmp_path):
    stamps = pd.date_range("2024-03-01 09:30", periods=300, freq="h", tz="America/New_York")
    write_csv(tmp_path, "X", [s.isoformat() for s in stamps])
    bars = load(tmp_path, interval="1h")
    assert bars.index[0] == pd.Timestamp("2024-03-01 14:30")  # the instant, in UTC
    local = local_calendar(bars.index, "America/New_York")
    assert np.isclose(local["hour_sin"][0], np.sin(2 * np.pi * (9 * 60 + 30) / 1440))
    with pytest.raises(DataError, match="not an IANA time zone"):
        local_calendar(bars.index, "Mars/Olympus")
    spec = TrainingRunSpec.model_validate({"data": {"source": "file", "uri": str(tmp_path), "symbols": ["X"],
                                                    "interval": "1h", "timezone": "America/New_York"},
                                           "features": {"set": "minimal"}})
    spec.features.set = "default"
    data = build_symbol_data(bars, spec, "X")
    assert np.isclose(data.X["hour_sin"].iloc[0], np.sin(2 * np.pi * 570 / 1440), atol=1e-6)


def test_day_first_dates_are_inferred_once_for_the_whole_column(tmp_path):
    days = pd.bdate_range("2005-01-03", periods=300)
    write_csv(tmp_path, "X", [d.strftime("%d/%m/%Y") for d in days])
    bars = load(tmp_path)
    assert (bars.index == days).all()  # 05/02/2005 is 5 February, as 13/01/2005 proves
    write_csv(tmp_path, "M", [d.strftime("%m/%d/%Y") for d in days])
    assert (load(tmp_path, "M").index == days).all()


def test_an_ambiguous_date_column_is_refused_unless_data_date_format_says(tmp_path):
    days = pd.date_range("2005-01-01", periods=12, freq="MS")  # every value has day 01: either reading works
    write_csv(tmp_path, "X", [d.strftime("%d/%m/%Y") for d in days])
    with pytest.raises(DataError, match=r"column 'date'.*day-first or month-first.*data.dateFormat: '%d/%m/%Y'"):
        load(tmp_path)
    assert (load(tmp_path, date_format="%d/%m/%Y").index == days).all()
    assert load(tmp_path, date_format="%m/%d/%Y").index[1] == pd.Timestamp("2005-01-02")


def test_a_bad_value_names_the_file_line_and_column(tmp_path):
    frame = bars_frame(300).astype(object)
    frame.loc[32, "close"] = "n/a?"
    write_csv(tmp_path, "X", [str(d.date()) for d in pd.bdate_range("2005-01-03", periods=300)], frame)
    with pytest.raises(DataError, match=r"line 34, column 'close': 'n/a\?' is not a number"):
        load(tmp_path)
    dates = [str(d.date()) for d in pd.bdate_range("2005-01-03", periods=300)]
    dates[7] = "2005-13-45"
    write_csv(tmp_path, "X", dates)
    with pytest.raises(DataError, match=r"line 9, column 'date': '2005-13-45' is not a timestamp"):
        load(tmp_path)


def test_adj_close_adjusts_ohlc_by_default_and_says_so(tmp_path, caplog):
    frame = bars_frame(300)
    adj = frame["close"].copy()  # the continuous, split-adjusted series
    raw = frame.copy()  # a 2:1 split on row 150: before it, Yahoo's Close is twice the adjusted one
    raw.loc[:149, ["open", "high", "low", "close"]] *= 2  # the unadjusted prices Yahoo ships
    write_csv(tmp_path, "X", [str(d.date()) for d in pd.bdate_range("2005-01-03", periods=300)], raw,
              **{"Adj Close": adj})
    with caplog.at_level(logging.INFO):
        bars = load(tmp_path)
    assert "adjusted by adj_close / close" in caplog.text
    np.testing.assert_allclose(bars["close"].to_numpy(), adj.to_numpy())
    assert abs(np.log(bars["close"]).diff().iloc[150]) < 0.1
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        unadjusted = load(tmp_path, adjust="none")
    assert unadjusted["close"].iloc[0] == pytest.approx(raw["close"].iloc[0])
    split_day = str(pd.bdate_range("2005-01-03", periods=300)[150].date())
    assert "X (" in caplog.text and "like an unadjusted split" in caplog.text and split_day in caplog.text
    (tmp_path / "X.csv").unlink()
    write_csv(tmp_path, "Y", [str(d.date()) for d in pd.bdate_range("2005-01-03", periods=300)])
    with pytest.raises(DataError, match="data.adjust is 'adjClose' but there is no Adj Close column"):
        load(tmp_path, "Y", adjust="adjClose")


def test_close_only_series_trains_on_the_close_features(tmp_path, caplog):
    days = pd.bdate_range("2005-01-03", periods=400)
    pd.DataFrame({"DATE": days.strftime("%Y-%m-%d"), "close": bars_frame(400)["close"]}).to_csv(
        tmp_path / "DGS10.csv", index=False)
    missing = r"missing column\(s\) \['open', 'high', 'low', 'volume'\].*data.columns: close"
    with pytest.raises(DataError, match=missing):
        load(tmp_path, "DGS10")
    bars = load(tmp_path, "DGS10", columns="close")
    assert (bars["open"] == bars["close"]).all() and bars["volume"].isna().all()
    spec = TrainingRunSpec.model_validate({"data": {"source": "file", "uri": str(tmp_path), "symbols": ["DGS10"],
                                                    "columns": "close"}})
    with caplog.at_level(logging.INFO):
        data = build_symbol_data(bars, spec, "DGS10")
    assert list(data.X.columns) == close_only(feature_names("default"))
    assert not any(c.startswith(("mfi", "obv", "atr", "log_volume")) for c in data.X.columns)
    assert "close-only series" in caplog.text and "rsi_14" in caplog.text


def test_mfi_is_nan_without_volume_like_every_volume_feature():
    frame = bars_frame(300).set_index(pd.bdate_range("2005-01-03", periods=300))
    frame.loc[frame.index[100:160], "volume"] = 0.0
    features = build_features(frame, "default")
    assert features["mfi_14"].iloc[130:160].isna().all()  # 14 bars of no volume: undefined
    want = talib.MFI(frame["high"].to_numpy(), frame["low"].to_numpy(), frame["close"].to_numpy(),
                     frame["volume"].to_numpy(), 14)
    np.testing.assert_allclose(features["mfi_14"].iloc[20:100].to_numpy(), want[20:100], rtol=1e-5)
