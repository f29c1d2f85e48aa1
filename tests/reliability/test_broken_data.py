"""Broken market-data files (tests/reliability/data/broken_files.py) through the `file` source:
`load_bars` gives a DataError that names the file, or accepts the file under the documented policy;
`nova-trainer prep` writes a failure marker carrying that message for each broken symbol and still
prepares every other symbol of the universe."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import yaml

from nova.errors import DataError
from nova.spec import DataSpec
from nova_trainer.data import load_bars
from nova_trainer.prep import sha256
from tests.conftest import small_run_manifest
from tests.reliability.data.broken_files import CASES, good_frame

pytestmark = pytest.mark.reliability
GOOD = ("GOODA", "GOODB")


def test_the_list_is_big_enough():
    assert len(CASES) >= 15 and len({c.symbol for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.symbol for c in CASES])
def test_load_bars(tmp_path, case):
    path = case.write(tmp_path, case.symbol)
    good_frame("GOODA").to_csv(tmp_path / "GOODA.csv", index=False)  # a neighbour that must not matter
    spec = DataSpec(source="file", uri=str(tmp_path), symbols=[case.symbol])
    if case.outcome == "accepted":
        frame = load_bars(spec, case.symbol)
        assert case.check(frame), frame.describe()
        return
    with pytest.raises(DataError) as err:
        load_bars(spec, case.symbol)
    message = str(err.value)
    assert str(path) in message, f"the message does not name the file: {message}"
    assert re.search(case.match, message), message
    assert "Traceback" not in message and len(message) < 1000


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """One `nova-trainer prep` over a universe of every broken file plus two good ones."""
    folder = tmp_path_factory.mktemp("universe")
    paths = {case.symbol: case.write(folder, case.symbol) for case in CASES}
    for symbol in GOOD:
        good_frame(symbol).to_parquet(folder / f"{symbol}.parquet")
    symbols = [GOOD[0], *paths, GOOD[1]]
    manifest = small_run_manifest(name="broken", symbols=symbols)
    manifest["spec"]["data"] = {"source": "file", "uri": str(folder), "symbols": symbols}
    manifest["spec"]["prep"] = {"maxAhead": len(symbols)}  # no trainer takes shards here
    config = folder.parent / "broken-run.yaml"
    config.write_text(yaml.safe_dump(manifest))
    out = folder.parent / "features"
    proc = subprocess.run([sys.executable, "-m", "nova_trainer.cli", "prep", "--config", str(config),
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    return proc, out, paths


def test_prep_finishes_and_reports(prepared):
    proc, out, _ = prepared
    assert proc.returncode == 0, proc.stderr[-3000:]
    errors = sum(c.outcome == "error" for c in CASES)
    assert f"{len(CASES) + len(GOOD) - errors} symbol(s) ready, {errors} failed" in proc.stdout
    assert "Traceback" not in proc.stderr
    done = json.loads((out / "_done").read_text())
    assert set(done) == {c.symbol for c in CASES} | set(GOOD)


@pytest.mark.parametrize("case", CASES, ids=[c.symbol for c in CASES])
def test_prep_marker(prepared, case):
    _, out, paths = prepared
    if case.outcome == "accepted":
        marker = json.loads((out / f"{case.symbol}.ready").read_text())
        assert marker["sha256"] == sha256(out / f"{case.symbol}.arrow") and marker["rows"] > 0
        assert not (out / f"{case.symbol}.failed").exists()
        return
    assert not (out / f"{case.symbol}.ready").exists() and not (out / f"{case.symbol}.arrow").exists()
    reason = json.loads((out / f"{case.symbol}.failed").read_text())["reason"]
    assert str(paths[case.symbol]) in reason and re.search(case.match, reason), reason


@pytest.mark.parametrize("symbol", GOOD)
def test_good_symbols_around_the_broken_ones_are_prepared(prepared, symbol):
    _, out, _ = prepared
    marker = json.loads((out / f"{symbol}.ready").read_text())
    assert marker["rows"] > 300 and marker["sha256"] == sha256(out / f"{symbol}.arrow")
