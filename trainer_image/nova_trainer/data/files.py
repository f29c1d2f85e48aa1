"""CSV and Parquet files: a folder of `<symbol>.csv|.parquet`, a glob, or one long table with a
`symbol` column. Errors name the file."""

from __future__ import annotations

import glob
from pathlib import Path

import pandas as pd

from nova.errors import DataError
from nova_trainer.data.frame import LINE_OFFSET_ATTR

SUFFIXES = (".parquet", ".pq", ".csv", ".csv.gz")


def _read(path: Path) -> pd.DataFrame:
    try:
        if path.name.endswith((".parquet", ".pq")):
            return pd.read_parquet(path)
        frame = pd.read_csv(path)
        frame.attrs[LINE_OFFSET_ATTR] = 2  # line 1 is the header: errors then name the file's line
        return frame
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except Exception as exc:  # pyarrow and pandas raise many types for a broken file
        raise DataError(f"{path}: cannot be read as {'Parquet' if 'parquet' in path.name else 'CSV'} "
                        f"({type(exc).__name__}: {str(exc)[:200]})") from None


def _per_symbol_file(candidates: list[Path], symbol: str) -> Path | None:
    for path in candidates:
        stem = path.name
        for suffix in SUFFIXES:
            if stem.endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        if stem.lower() == symbol.lower():
            return path
    return None


def load(uri: str, symbol: str) -> tuple[pd.DataFrame, str]:
    """Return (raw frame, origin) for `symbol` from `uri`."""
    root = Path(uri)
    is_glob = any(ch in uri for ch in "*?[")
    if not is_glob and not root.exists():
        raise DataError(f"data.uri '{uri}' does not exist (for data.source 'file': a folder of "
                        "<symbol>.csv|.parquet, one file, or a glob)")
    if root.is_dir():
        candidates = sorted(p for p in root.iterdir() if p.name.endswith(SUFFIXES))
    else:
        candidates = sorted(Path(p) for p in glob.glob(uri)) if is_glob else [root]
    if not candidates:
        raise DataError(f"data.uri '{uri}': no CSV or Parquet files found")
    match = _per_symbol_file(candidates, symbol)
    if match is not None:
        return _read(match), str(match)
    if len(candidates) == 1 and candidates[0].exists():
        table = _read(candidates[0])
        table.columns = [str(c).strip().lower() for c in table.columns]
        if "symbol" not in table.columns:
            raise DataError(f"{candidates[0]}: no 'symbol' column and no file named {symbol}.csv/.parquet")
        rows = table[table["symbol"].astype(str) == symbol].drop(columns=["symbol"])
        rows.attrs.update(table.attrs)
        if rows.empty:
            known = sorted(table["symbol"].astype(str).unique())[:20]
            raise DataError(f"unknown symbol '{symbol}' in {candidates[0]}; it holds {known}")
        return rows, str(candidates[0])
    raise DataError(f"unknown symbol '{symbol}': no file {symbol}.csv or {symbol}.parquet under '{uri}'")


def symbols_in(uri: str) -> list[str]:
    """The symbols of a folder of per-symbol files (what `nova symbols --source file` lists)."""
    root = Path(uri)
    if not root.is_dir():
        raise DataError(f"data.uri '{uri}' is not a folder of <symbol>.csv|.parquet files")
    names = []
    for path in sorted(root.iterdir()):
        for suffix in SUFFIXES:
            if path.name.endswith(suffix):
                names.append(path.name[: -len(suffix)])
                break
    return names
