"""The prep sidecar and its consumer: atomic shards, failure markers, backpressure, SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from nova.errors import DataError
from nova.manifest import parse_run
from nova.spec import resolve
from nova_trainer.prep import consume_shards, produce, sha256
from tests.conftest import small_run_manifest


def make_run(symbols=("AAA", "BBB", "CCC"), **prep):
    manifest = small_run_manifest(symbols=symbols)
    manifest["spec"]["prep"] = {"maxAhead": 5, "waitTimeoutSeconds": 5, **prep}
    return resolve(parse_run(manifest))


def test_produce_then_consume_verifies_and_deletes(tmp_path):
    run = make_run()
    outcome = produce(run, tmp_path)
    assert outcome == {"AAA": "ready", "BBB": "ready", "CCC": "ready"}
    marker = json.loads((tmp_path / "AAA.ready").read_text())
    assert marker["sha256"] == sha256(tmp_path / "AAA.arrow") and marker["rows"] > 0
    got = list(consume_shards(run, tmp_path, delete=True))
    assert [s for s, _ in got] == ["AAA", "BBB", "CCC"]
    assert all(not isinstance(d, Exception) and len(d.y) == marker["rows"] for _, d in got)
    assert not list(tmp_path.glob("*.arrow")) and len(list(tmp_path.glob("*.consumed"))) == 3


def test_symbol_with_no_data_is_reported_and_skipped(tmp_path):
    manifest = small_run_manifest(symbols=("AAPL", "NOPE", "MSFT"))
    manifest["spec"]["data"] = {"source": "bundled", "symbols": ["AAPL", "NOPE", "MSFT"],
                                "start": "2009-01-01", "end": "2013-01-01"}
    manifest["spec"]["prep"] = {"waitTimeoutSeconds": 5}
    run = resolve(parse_run(manifest))
    outcome = produce(run, tmp_path)
    assert outcome["AAPL"] == "ready" and outcome["MSFT"] == "ready"
    assert "unknown symbol 'NOPE'" in outcome["NOPE"]
    got = dict(consume_shards(run, tmp_path))
    assert isinstance(got["NOPE"], DataError) and "prep failed" in str(got["NOPE"])
    assert not isinstance(got["MSFT"], Exception)


def test_corrupted_shard_is_refused_with_a_clear_message(tmp_path):
    run = make_run(symbols=("AAA", "BBB"))
    produce(run, tmp_path)
    shard = tmp_path / "AAA.arrow"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    got = dict(consume_shards(run, tmp_path))
    assert isinstance(got["AAA"], DataError) and "checksum mismatch" in str(got["AAA"])
    assert not isinstance(got["BBB"], Exception)  # the rest of the universe is unaffected


def test_backpressure_keeps_at_most_max_ahead_unconsumed(tmp_path):
    run = make_run(symbols=("AAA", "BBB", "CCC", "DDD"), maxAhead=1)
    producer = threading.Thread(target=produce, args=(run, tmp_path), daemon=True)
    producer.start()
    seen_pending = []
    for _symbol, _data in consume_shards(run, tmp_path):
        time.sleep(0.4)  # a slow trainer: the producer has time to run ahead, but only so far
        ready = {p.stem for p in tmp_path.glob("*.ready")}
        taken = {p.stem for p in tmp_path.glob("*.taken")}
        seen_pending.append(len(ready - taken))
    producer.join(10)
    assert max(seen_pending) == 1  # exactly maxAhead prepared ahead while a symbol trains


def test_consumer_times_out_clearly_when_prep_is_gone(tmp_path):
    run = make_run(symbols=("AAA",), waitTimeoutSeconds=1)
    t0 = time.monotonic()
    (symbol, err), = list(consume_shards(run, tmp_path))
    assert isinstance(err, DataError) and "is the prep container running" in str(err)
    assert time.monotonic() - t0 < 5


def _prep_process(config: Path, out: Path, linger: bool = False) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "nova_trainer.cli", "prep", "--config", str(config), "--out", str(out)]
    return subprocess.Popen(cmd + (["--linger"] if linger else []), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_prep_killed_mid_universe_then_restarted_loses_nothing(tmp_path):
    import yaml

    manifest = small_run_manifest(symbols=[f"S{i}" for i in range(8)])
    manifest["spec"]["data"]["bars"] = 20000
    manifest["spec"]["prep"] = {"maxAhead": 8}  # no trainer here to take shards
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(manifest))
    out = tmp_path / "features"
    proc = _prep_process(config, out)
    deadline = time.monotonic() + 60
    while not (out / "S0.ready").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = {p.stem: sha256(out / f"{p.stem}.arrow") for p in out.glob("*.ready")}
    assert "S0" in done_before and len(done_before) < 8
    assert not (out / "_done").exists()
    proc = _prep_process(config, out)
    assert proc.wait(120) == 0
    for symbol, digest in done_before.items():  # finished shards were kept, not rebuilt
        assert sha256(out / f"{symbol}.arrow") == digest
    assert len(list(out.glob("*.ready"))) == 8


def test_sigterm_during_prep_exits_cleanly_and_leaves_only_whole_shards(tmp_path):
    import yaml

    manifest = small_run_manifest(symbols=[f"S{i}" for i in range(6)])
    manifest["spec"]["data"]["bars"] = 20000
    manifest["spec"]["prep"] = {"maxAhead": 6}
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(manifest))
    out = tmp_path / "features"
    proc = _prep_process(config, out, linger=True)
    deadline = time.monotonic() + 60
    while not list(out.glob("*.ready")) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # now most likely inside the next symbol's build or write
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    assert not list(out.glob(".*.tmp"))
    for marker in out.glob("*.ready"):
        assert json.loads(marker.read_text())["sha256"] == sha256(out / f"{marker.stem}.arrow")


def test_linger_keeps_the_sidecar_alive_until_sigterm(tmp_path):
    import yaml

    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(small_run_manifest(symbols=["AAA"])))
    out = tmp_path / "features"
    proc = _prep_process(config, out, linger=True)
    deadline = time.monotonic() + 60
    while not (out / "_done").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    assert proc.poll() is None  # a native sidecar that exits would be restarted by the kubelet
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0


def test_two_writers_of_one_marker_never_collide(tmp_path):
    """Local workers share one features folder and write the same `.taken`/`.consumed` markers:
    raced many times, no writer may fail and no temp file may be left behind (issue 14, bug 1)."""
    from nova_trainer.prep import _atomic_text

    rounds, errors = 300, []
    barrier = threading.Barrier(2)

    def writer(n: int) -> None:
        for i in range(rounds):
            try:
                barrier.wait(timeout=10)
                _atomic_text(tmp_path / f"S{i}.taken", f"writer {n}")
            except Exception as exc:  # noqa: BLE001 - the test collects every failure
                errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, f"{len(errors)} of {2 * rounds} marker writes failed, first: {errors[0]!r}"
    assert len(list(tmp_path.glob("*.taken"))) == rounds
    assert not list(tmp_path.glob(".*.tmp"))


def test_two_consumers_of_one_folder_both_get_every_symbol(tmp_path):
    """The local runner's layout: one prep, two workers reading the same shards."""
    run = make_run(symbols=("AAA", "BBB"))
    produce(run, tmp_path)
    results: dict[int, list] = {}

    def consumer(n: int) -> None:
        results[n] = [(s, d) for s, d in consume_shards(run, tmp_path, delete=False)]

    for _ in range(5):
        for p in tmp_path.glob("*.taken"):
            p.unlink()
        for p in tmp_path.glob("*.consumed"):
            p.unlink()
        threads = [threading.Thread(target=consumer, args=(n,)) for n in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for n in range(2):
            assert [s for s, _ in results[n]] == ["AAA", "BBB"]
            assert not [d for _, d in results[n] if isinstance(d, Exception)]
    assert not list(tmp_path.glob(".*.tmp"))
