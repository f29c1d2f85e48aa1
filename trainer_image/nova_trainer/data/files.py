"""CSV and Parquet files: a folder of `<symbol>.csv|.parquet`, a glob, or one long table with a
`symbol` column, on a local path, a mounted volume (data.claimName) or an object store
(s3://bucket/prefix, through `nova_trainer.store`). Errors name the file (and the bucket and the
endpoint, never a credential)."""

from __future__ import annotations

import fnmatch
import glob
import io
import os
import posixpath
from pathlib import Path

import pandas as pd

from nova import object_store
from nova.errors import DataError
from nova.spec import DataSpec, ObjectStoreSpec
from nova_trainer.data.frame import LINE_OFFSET_ATTR, TIME_COLUMNS

DATA_ROOT_ENV = "NOVA_DATA_ROOT"  # set by the operator where data.claimName is mounted
BATCH_ROWS = 262_144  # rows per batch when a long table is scanned for one symbol

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


def data_uri(spec: DataSpec) -> str:
    """data.uri as the trainer opens it: inside the mounted claim when data.claimName is set and the
    pod has it mounted ($NOVA_DATA_ROOT); as written otherwise (a local run reads it from here)."""
    uri = spec.uri or ""
    root = os.environ.get(DATA_ROOT_ENV)
    return os.path.join(root, uri) if spec.claim_name and root else uri


def load(uri: str, symbol: str, store: ObjectStoreSpec | None = None) -> tuple[pd.DataFrame, str]:
    """Return (raw frame, origin) for `symbol` from `uri`."""
    if object_store.is_remote(uri):
        return _load_remote(uri, symbol, store)
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


def _symbol_of(name: str) -> str | None:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


def _remote_candidates(uri: str, store: ObjectStoreSpec | None):
    from nova_trainer import store as stores

    if any(ch in uri for ch in "*?["):
        head = uri[: min(uri.index(ch) for ch in "*?[" if ch in uri)]
        parent = stores.place(head.rsplit("/", 1)[0], store)
        stores.check_bucket(parent, "read")
        return [p for p in stores.list_files(parent) if fnmatch.fnmatch(p.uri, uri)]
    p = stores.place(uri, store)
    kind = stores.info(p).type
    if kind == stores.pafs.FileType.File:
        return [p]
    files = [c for c in stores.list_files(p) if c.uri.endswith(SUFFIXES)]
    if not files and kind == stores.pafs.FileType.NotFound:
        stores.check_bucket(p, "read")
        raise DataError(f"data.uri '{uri}' does not exist ({p.where}): no object and no prefix of that name")
    return files


def _long_table_batches(p, is_parquet: bool):
    """(schema names, batch iterator) of one object, read in row batches. CSV time columns stay
    strings, so they are parsed by Nova's own rules (frame.py), as a local CSV's are."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    if is_parquet:
        file = pq.ParquetFile(p.fs.open_input_file(p.path))
        return file.schema_arrow.names, file.iter_batches(batch_size=BATCH_ROWS)

    def reader(types=None):
        stream = p.fs.open_input_stream(p.path, compression="gzip" if p.path.endswith(".gz") else None)
        return pcsv.open_csv(stream, read_options=pcsv.ReadOptions(block_size=16 << 20),
                             convert_options=pcsv.ConvertOptions(column_types=types or {}))

    names = reader().schema.names
    times = {n: pa.string() for n in names if n.strip().lower() in TIME_COLUMNS}
    return names, iter(reader(times))


def _read_remote(p, columns_filter: str | None = None) -> pd.DataFrame:
    """One object as a frame. With `columns_filter` (a symbol), a long table is read in row batches
    and only that symbol's rows are kept, so the whole table never has to fit in memory."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from nova_trainer import store as stores

    is_parquet = p.uri.endswith((".parquet", ".pq"))
    try:
        if columns_filter is None:
            data = stores.read_bytes(p)
            if is_parquet:
                return pd.read_parquet(io.BytesIO(data))
            frame = pd.read_csv(io.BytesIO(data), compression="gzip" if p.uri.endswith(".gz") else None)
            frame.attrs[LINE_OFFSET_ATTR] = 2
            return frame
        names, batches = _long_table_batches(p, is_parquet)
        column = {n.strip().lower(): n for n in names}.get("symbol")
        if column is None:
            raise DataError(f"{p.uri}: no 'symbol' column and no file named {columns_filter}.csv/.parquet")
        parts, seen = [], set[str]()
        for batch in batches:
            values = pc.cast(batch.column(column), pa.string())
            kept = batch.filter(pc.equal(values, columns_filter))
            if kept.num_rows:
                parts.append(kept)
            elif not parts and len(seen) < 20:
                seen.update(values.unique().to_pylist())
        if not parts:
            raise DataError(f"unknown symbol '{columns_filter}' in {p.uri}; it holds {sorted(seen)[:20]}")
        frame = pa.Table.from_batches(parts).to_pandas()
        frame.columns = [str(c).strip().lower() for c in frame.columns]
        return frame.drop(columns=["symbol"])
    except DataError:
        raise
    except OSError as exc:
        raise stores.explain(exc, p, "read") from None
    except Exception as exc:  # pyarrow and pandas raise many types for a broken file
        raise DataError(f"{p.uri}: cannot be read as {'Parquet' if is_parquet else 'CSV'} "
                        f"({type(exc).__name__}: {str(exc)[:200]})") from None


def _load_remote(uri: str, symbol: str, store: ObjectStoreSpec | None) -> tuple[pd.DataFrame, str]:
    candidates = _remote_candidates(uri, store)
    if not candidates:
        raise DataError(f"data.uri '{uri}': no CSV or Parquet files found")
    for p in candidates:
        if (_symbol_of(posixpath.basename(p.path)) or "").lower() == symbol.lower():
            return _read_remote(p), p.uri
    if len(candidates) == 1:
        return _read_remote(candidates[0], columns_filter=symbol), candidates[0].uri
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
