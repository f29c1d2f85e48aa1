"""Bars from PostgreSQL through psycopg 3: a table (symbol, timestamp, open, high, low, close,
volume) or a query with a `%(symbol)s` parameter. The URL comes from a Secret or the environment
and is never printed."""

from __future__ import annotations

import pandas as pd

from nova.errors import DataError
from nova.secrets import mask_url


def load(url: str, symbol: str, table: str | None, query: str | None) -> tuple[pd.DataFrame, str]:
    import psycopg
    from psycopg import sql

    if query:
        statement: str | sql.Composed = query
        origin = "postgres query"
    else:
        if not table:
            raise DataError("postgres source: set data.table or data.query")
        parts = [sql.Identifier(p) for p in table.split(".")]
        statement = sql.SQL("SELECT * FROM {} WHERE symbol = %(symbol)s ORDER BY 2").format(sql.SQL(".").join(parts))
        origin = f"postgres table {table}"
    try:
        with psycopg.connect(_libpq_url(url), connect_timeout=10) as conn, conn.cursor() as cur:
            cur.execute(statement, {"symbol": symbol})
            columns = [d.name for d in cur.description or []]
            rows = cur.fetchall()
    except psycopg.Error as exc:
        raise DataError(f"{origin} at {mask_url(url)}: {str(exc).strip().splitlines()[0]}") from None
    if not rows:
        raise DataError(f"unknown symbol '{symbol}': {origin} returned no rows")
    frame = pd.DataFrame(rows, columns=columns)
    return frame.drop(columns=[c for c in ("symbol",) if c in frame.columns]), origin


def _libpq_url(url: str) -> str:
    """psycopg wants postgresql://; SQLAlchemy-style URLs carry a +driver."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+')[0]}{sep}{rest}"
