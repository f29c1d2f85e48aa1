"""The `postgres` data source against a real PostgreSQL: a table and a query, with errors that name
the symbol and never the password."""

from __future__ import annotations

import psycopg
import pytest

from nova.errors import DataError
from nova.spec import DataSpec
from nova_trainer.data import load_bars
from nova_trainer.data.synthetic import generate

pytestmark = pytest.mark.integration


@pytest.fixture
def bars_db(pg_url, monkeypatch):
    libpq = pg_url.replace("+psycopg", "")
    with psycopg.connect(libpq) as conn:
        conn.execute("CREATE TABLE bars (symbol text, timestamp timestamptz, open float8, high float8, low float8, "
                     "close float8, volume float8)")
        for symbol in ("AAA", "BBB"):
            frame = generate(symbol, 400, 3)
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO bars VALUES (%s, %s, %s, %s, %s, %s, %s)",
                                [(symbol, ts, *row)
                                 for ts, row in zip(frame.index, frame.to_numpy().tolist(), strict=True)])
    monkeypatch.setenv("NOVA_DATA_URL", pg_url)
    return pg_url


def test_table_and_query_give_the_validated_frame(bars_db):
    expected = generate("AAA", 400, 3)
    from_table = load_bars(DataSpec(source="postgres", table="bars", symbols=["AAA"]), "AAA")
    assert len(from_table) == 400
    assert from_table["close"].to_numpy() == pytest.approx(expected["close"].to_numpy())
    query = "SELECT timestamp, open, high, low, close, volume FROM bars WHERE symbol = %(symbol)s"
    from_query = load_bars(DataSpec(source="postgres", query=query, symbols=["BBB"]), "BBB")
    assert len(from_query) == 400 and from_query.index.is_monotonic_increasing


def test_unknown_symbol_and_bad_password_are_clear(bars_db, monkeypatch):
    with pytest.raises(DataError, match="unknown symbol 'ZZZ'"):
        load_bars(DataSpec(source="postgres", table="bars", symbols=["ZZZ"]), "ZZZ")
    monkeypatch.setenv("NOVA_DATA_URL", bars_db.replace("nova-test-pw", "wrong"))
    with pytest.raises(DataError) as err:
        load_bars(DataSpec(source="postgres", table="bars", symbols=["AAA"]), "AAA")
    assert "password authentication failed" in str(err.value) and "wrong" not in str(err.value)


def test_missing_url_says_where_it_comes_from(monkeypatch):
    monkeypatch.delenv("NOVA_DATA_URL", raising=False)
    with pytest.raises(DataError, match=r"\$NOVA_DATA_URL"):
        load_bars(DataSpec(source="postgres", table="bars", symbols=["AAA"]), "AAA")
