"""Broken market-data files, generated at test time into a temporary folder (nothing binary is
committed). Each case writes `<SYMBOL>.<ext>` (or a trap named like one) and says what Nova must do
with it under the policy of `nova_trainer/data/frame.py`:

- `error`: a DataError whose message matches `match` and names the file;
- `accepted`: loaded, and `check(frame)` holds (duplicates keep the last row, unsorted is sorted,
  up to 5% rows with a missing price are dropped, offsets are converted to UTC).
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

ROWS = 700  # enough for the small run's walk-forward windows after the feature warm-up


def good_frame(symbol: str, rows: int = ROWS) -> pd.DataFrame:
    from nova_trainer.data.synthetic import generate

    return generate(symbol, rows, seed=5).reset_index()  # columns: timestamp, open, high, low, close, volume


@dataclass(frozen=True)
class BrokenFile:
    symbol: str
    what: str
    write: Callable[[Path, str], Path]  # (folder, symbol) -> the path it wrote
    outcome: str  # "error" | "accepted"
    match: str = ""  # regex the DataError must match (error cases)
    check: Callable[[pd.DataFrame], bool] | None = None  # accepted cases


def _csv(folder: Path, symbol: str, frame: pd.DataFrame) -> Path:
    path = folder / f"{symbol}.csv"
    frame.to_csv(path, index=False)
    return path


def _parquet(folder: Path, symbol: str, frame: pd.DataFrame) -> Path:
    path = folder / f"{symbol}.parquet"
    frame.to_parquet(path)
    return path


def truncated_parquet(folder: Path, symbol: str) -> Path:
    path = _parquet(folder, symbol, good_frame(symbol))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a copy interrupted half-way
    return path


def wrong_columns(folder: Path, symbol: str) -> Path:
    return _parquet(folder, symbol, good_frame(symbol).rename(columns={"close": "price", "volume": "qty"}))


def no_time_column(folder: Path, symbol: str) -> Path:
    return _csv(folder, symbol, good_frame(symbol).drop(columns=["timestamp"]))


def few_nan_prices(folder: Path, symbol: str) -> Path:
    frame = good_frame(symbol)
    frame.loc[frame.index[10:24], "close"] = np.nan  # 14 of 700 rows = 2%
    return _csv(folder, symbol, frame)


def many_nan_prices(folder: Path, symbol: str) -> Path:
    frame = good_frame(symbol)
    frame.loc[frame.index[::5], "open"] = np.nan  # 20%
    return _parquet(folder, symbol, frame)


def infinite_price(folder: Path, symbol: str) -> Path:
    frame = good_frame(symbol)
    frame.loc[frame.index[100], "high"] = np.inf
    return _parquet(folder, symbol, frame)


def huge_value(folder: Path, symbol: str) -> Path:
    path = _csv(folder, symbol, good_frame(symbol))
    lines = path.read_text().splitlines()
    cells = lines[200].split(",")
    cells[4] = "1e400"  # close: beyond float64, parsed as inf
    lines[200] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    return path


def duplicate_timestamps(folder: Path, symbol: str) -> Path:
    frame = good_frame(symbol)
    again = frame.iloc[[50]].assign(close=frame["close"].iloc[50] * 1.01)  # a re-delivered bar
    return _csv(folder, symbol, pd.concat([frame, again], ignore_index=True))


def unsorted_time(folder: Path, symbol: str) -> Path:
    return _parquet(folder, symbol, good_frame(symbol).sample(frac=1.0, random_state=3))


def empty_file(folder: Path, symbol: str) -> Path:
    path = folder / f"{symbol}.csv"
    path.write_bytes(b"")
    return path


def header_only(folder: Path, symbol: str) -> Path:
    path = folder / f"{symbol}.csv"
    path.write_text("timestamp,open,high,low,close,volume\n")
    return path


def wrong_types(folder: Path, symbol: str) -> Path:
    frame = good_frame(symbol).astype({"close": str})
    frame.loc[frame.index[30], "close"] = "twelve dollars"
    return _parquet(folder, symbol, frame)


def negative_volume(folder: Path, symbol: str) -> Path:
    frame = good_frame(symbol)
    frame.loc[frame.index[60], "volume"] = -500.0
    return _csv(folder, symbol, frame)


def zero_price(folder: Path, symbol: str) -> Path:
    frame = good_frame(symbol)
    frame.loc[frame.index[70], ["open", "low"]] = 0.0
    return _csv(folder, symbol, frame)


def non_utf8(folder: Path, symbol: str) -> Path:
    path = _csv(folder, symbol, good_frame(symbol))
    data = path.read_bytes().replace(b"timestamp", "horodat\u00e9".encode("latin-1"), 1)
    path.write_bytes(data + b"\xff\xfe\x00garbage\n")
    return path


def mixed_timezones(folder: Path, symbol: str) -> Path:
    frame = good_frame(symbol)
    stamps = frame["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S").astype(object)
    stamps[::2] = stamps[::2] + "+00:00"
    stamps[1::2] = (frame["timestamp"][1::2] + pd.Timedelta(hours=5)).dt.strftime("%Y-%m-%dT%H:%M:%S") + "+05:00"
    return _csv(folder, symbol, frame.assign(timestamp=stamps))


def bad_timestamps(folder: Path, symbol: str) -> Path:
    frame = good_frame(symbol).astype({"timestamp": str})
    frame.loc[frame.index[5], "timestamp"] = "not-a-date"
    return _csv(folder, symbol, frame)


def directory_named_like_a_file(folder: Path, symbol: str) -> Path:
    path = folder / f"{symbol}.csv"
    path.mkdir()
    (path / "inside.txt").write_text("a folder, not a file")
    return path


def symlink_loop(folder: Path, symbol: str) -> Path:
    path = folder / f"{symbol}.parquet"
    other = folder / f"{symbol}-loop.parquet.link"
    os.symlink(other.name, path)
    os.symlink(path.name, other)
    return path


def dangling_symlink(folder: Path, symbol: str) -> Path:
    path = folder / f"{symbol}.csv"
    os.symlink("/nonexistent/nova/bars.csv", path)
    return path


def corrupt_gzip(folder: Path, symbol: str) -> Path:
    path = folder / f"{symbol}.csv.gz"
    data = gzip.compress(good_frame(symbol).to_csv(index=False).encode())
    path.write_bytes(data[: len(data) // 3] + b"\x00" * 64)
    return path


def binary_junk(folder: Path, symbol: str) -> Path:
    path = folder / f"{symbol}.parquet"
    path.write_bytes(b"PAR1" + np.random.default_rng(1).bytes(4096) + b"PAR1")
    return path


def _unique_sorted(df: pd.DataFrame) -> bool:
    return df.index.is_monotonic_increasing and df.index.is_unique


CASES: list[BrokenFile] = [
    BrokenFile("TRUNC", "truncated Parquet (half the bytes)", truncated_parquet, "error", r"cannot be read as Parquet"),
    BrokenFile("JUNK", "random bytes between Parquet magic numbers", binary_junk, "error",
               r"cannot be read as Parquet"),
    BrokenFile("WRONGCOLS", "columns price/qty instead of close/volume", wrong_columns, "error",
               r"missing column\(s\) \['close', 'volume'\]"),
    BrokenFile("NOTIME", "no time column", no_time_column, "error", r"no time column"),
    BrokenFile("FEWNAN", "2% of closes NaN", few_nan_prices, "accepted",
               check=lambda df: len(df) == ROWS - 14 and not df.isna().any().any()),
    BrokenFile("MANYNAN", "20% of opens NaN", many_nan_prices, "error", r"20% of rows have a missing price"),
    BrokenFile("INF", "an infinite high", infinite_price, "error", r"infinite value at"),
    BrokenFile("HUGE", "a close of 1e400 (beyond float64)", huge_value, "error", r"infinite value at"),
    BrokenFile("DUPTS", "a bar delivered twice, second one differs", duplicate_timestamps, "accepted",
               check=lambda df: len(df) == ROWS and _unique_sorted(df)),
    BrokenFile("UNSORTED", "rows shuffled", unsorted_time, "accepted",
               check=lambda df: len(df) == ROWS and _unique_sorted(df)),
    BrokenFile("EMPTY", "0-byte CSV", empty_file, "error", r"cannot be read as CSV \(EmptyDataError"),
    BrokenFile("HEADER", "CSV header only", header_only, "error", r": no rows"),
    BrokenFile("WRONGTYPE", "close stored as text, one 'twelve dollars'", wrong_types, "error",
               r"column 'close': 'twelve dollars' is not a number"),
    BrokenFile("NEGVOL", "a negative volume", negative_volume, "error", r"negative volume at"),
    BrokenFile("ZERO", "open and low of 0", zero_price, "error", r"non-positive price at"),
    BrokenFile("LATIN1", "Latin-1 header and trailing non-UTF-8 bytes", non_utf8, "error",
               r"cannot be read as CSV \(UnicodeDecodeError"),
    BrokenFile("MIXEDTZ", "timestamps alternating +00:00 and +05:00", mixed_timezones, "accepted",
               check=lambda df: len(df) == ROWS and _unique_sorted(df) and df.index.tz is None),
    BrokenFile("BADTS", "one timestamp 'not-a-date'", bad_timestamps, "error",
               r"line 7, column 'timestamp': 'not-a-date' is not a timestamp"),
    BrokenFile("ISDIR", "a folder named BAD.csv", directory_named_like_a_file, "error",
               r"cannot be read as CSV \(IsADirectoryError"),
    BrokenFile("LOOP", "a symlink loop named like a Parquet file", symlink_loop, "error",
               r"cannot be read as Parquet|Too many levels of symbolic links|file not found"),
    BrokenFile("DANGLING", "a symlink to a missing file", dangling_symlink, "error", r"file not found"),
    BrokenFile("GZIP", "a corrupted .csv.gz", corrupt_gzip, "error", r"cannot be read as CSV"),
]
