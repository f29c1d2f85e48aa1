"""Checking every symbol's bars before any worker starts: a wrong symbol or a missing file must be
one line on the terminal in seconds, not a log line found after prep and the workers ran for nothing.
Only the bars are loaded and validated (existence, columns, the date range), not the features."""

from __future__ import annotations

from dataclasses import dataclass

from nova.errors import DataError, NovaError
from nova.spec import DataSpec


def check_symbols(spec: DataSpec) -> dict[str, str]:
    """{symbol: what is wrong} for every symbol whose bars cannot be used; empty when all can."""
    from nova_trainer.data import load_bars

    problems: dict[str, str] = {}
    for symbol in spec.symbols:
        try:
            load_bars(spec, symbol)
        except NovaError as exc:
            problems[symbol] = str(exc)
        except Exception as exc:  # a broken file or driver: still named, never a traceback
            problems[symbol] = f"{symbol}: {type(exc).__name__}: {exc}"
    return problems


@dataclass
class SymbolRange:
    symbol: str
    first: str
    last: str
    bars: int
    origin: str


def describe_symbols(source: str, uri: str | None = None) -> list[SymbolRange]:
    """What a source holds: the bundled symbols, or the per-symbol files of a folder."""
    from nova_trainer.data import bundled, files, validate_bars

    if source == "bundled":
        names = bundled.available()
    elif source == "file":
        if not uri:
            raise DataError("nova symbols --source file needs --uri (a folder of <symbol>.csv|.parquet)")
        names = files.symbols_in(uri)
    else:
        raise DataError(f"--source '{source}': only bundled and file can be listed")
    rows = []
    for name in names:
        raw, origin = bundled.load(name) if source == "bundled" else files.load(uri or "", name)
        bars = validate_bars(raw, name, origin)
        rows.append(SymbolRange(name, str(bars.index[0].date()), str(bars.index[-1].date()), len(bars), origin))
    return rows
