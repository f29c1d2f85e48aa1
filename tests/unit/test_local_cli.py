"""The `nova` command as a new user meets it (issue 14): each test runs the real CLI in a fresh
interpreter, as the console script does."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.conftest import small_run_manifest

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "examples" / "quickstart.yaml"


def nova(*args: str, timeout: float = 120, env: dict | None = None, cwd: Path | None = None
         ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nova_trainer.local.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=cwd)


def write(tmp_path: Path, manifest: dict, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(manifest))
    return path


# --- nova validate ----------------------------------------------------------------------------

def test_validate_accepts_the_quickstart_spec_and_data():
    result = nova("validate", str(QUICKSTART))
    assert result.returncode == 0, result.stderr
    assert "spec ok" in result.stdout and "data ok (AAPL, MSFT, SPX)" in result.stdout


def test_validate_refuses_what_the_api_server_refuses(tmp_path):
    manifest = small_run_manifest()
    manifest["spec"]["validation"]["walkForward"]["gap"] = 0  # < target.horizon: a CEL rule's twin
    result = nova("validate", str(write(tmp_path, manifest)))
    assert result.returncode == 2
    assert "validation.walkForward.gap must be >= target.horizon" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_fields_get_a_did_you_mean_in_validate_and_run(tmp_path):
    manifest = small_run_manifest()
    manifest["spec"]["validation"] = {"walkFoward": {"folds": 2}}
    manifest["spec"]["tuning"]["searchSpace"] = {"max_depth": {"type": "int", "low": 2, "hihg": 5}}
    manifest["spec"]["modle"] = {}
    path = write(tmp_path, manifest)
    for command in ("validate", "run"):
        result = nova(command, str(path))
        assert result.returncode == 2, result.stderr
        assert "spec.validation.walkFoward: unknown field (did you mean walkForward?)" in result.stderr
        assert "hihg: unknown field (did you mean high?)" in result.stderr
        assert "spec.modle: unknown field (did you mean model?)" in result.stderr
    manifest["spec"]["zzz"] = 1  # nothing close: no guess
    result = nova("validate", str(write(tmp_path, manifest)))
    assert "spec.zzz: unknown field\n" in result.stderr + "\n"


PROBE = textwrap.dedent("""
    import sys
    from nova_trainer.local.cli import main
    code = main(sys.argv[1:])
    heavy = sorted(m for m in ("xgboost", "optuna", "pandas", "numpy", "sklearn") if m in sys.modules)
    print("HEAVY=" + ",".join(heavy))
    sys.exit(code)
""")


@pytest.mark.parametrize("args, code", [(["validate", "--spec-only", str(QUICKSTART)], 0),
                                        (["validate", "BAD"], 2), (["show", str(QUICKSTART)], 0)])
def test_the_spec_is_checked_before_any_heavy_import(tmp_path, args, code):
    """A typo must cost well under a second: the spec part imports pydantic and YAML only."""
    if args[-1] == "BAD":
        manifest = small_run_manifest()
        manifest["spec"]["tuning"]["trials"] = 0
        args = ["validate", str(write(tmp_path, manifest))]
    result = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == code, result.stderr
    assert "HEAVY=\n" in result.stdout, result.stdout


def test_validate_reports_every_symbol_without_data(tmp_path):
    manifest = small_run_manifest(symbols=("AAPL", "TSLA"))
    manifest["spec"]["data"] = {"source": "bundled", "symbols": ["AAPL", "TSLA"]}
    result = nova("validate", str(write(tmp_path, manifest)))
    assert result.returncode == 2
    assert "unknown symbol 'TSLA' for data.source 'bundled'; available:" in result.stderr
    assert "unknown symbol 'AAPL'" not in result.stderr  # (a warning about AAPL's bars may be printed)


# --- nova show, symbols, crd ------------------------------------------------------------------

def test_show_prints_the_resolved_spec_as_the_operator_stores_it(tmp_path):
    from nova.manifest import load_run
    from nova.spec import ResolvedRun, resolve

    result = nova("show", str(QUICKSTART))
    assert result.returncode == 0, result.stderr
    shown = ResolvedRun.model_validate(json.loads(result.stdout))
    assert shown == resolve(load_run(QUICKSTART))
    doc = json.loads(result.stdout)
    assert doc["spec"]["tuning"]["sampler"]["seed"] == 42  # a default, filled in
    as_yaml = nova("show", "-o", "yaml", str(QUICKSTART))
    assert yaml.safe_load(as_yaml.stdout) == doc


def test_symbols_lists_the_bundled_data_with_date_ranges():
    result = nova("symbols")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:]}
    assert set(rows) == {"AAPL", "IBM", "MSFT", "GOOG", "FB", "SPX", "IXIC"}
    assert rows["AAPL"][1].startswith("2000-") and rows["AAPL"][2].startswith("2013-")
    assert rows["SPX"][1].startswith("1999-") and int(rows["SPX"][3]) > 4000


def test_symbols_of_a_folder_of_files(tmp_path):
    (tmp_path / "XYZ.csv").write_text("timestamp,open,high,low,close,volume\n"
                                      "2020-01-02,1,2,0.5,1.5,10\n2020-01-03,1.5,2,1,1.8,12\n")
    result = nova("symbols", "--source", "file", "--uri", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1].split()[:4] == ["XYZ", "2020-01-02", "2020-01-03", "2"]


def test_crd_prints_the_committed_crd_and_help_writes_no_file(tmp_path):
    result = nova("crd")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (REPO / "crds" / "nova.dev_trainingruns.yaml").read_text()
    for args in (["crd", "--help"], ["--help"]):
        shown = nova(*args, cwd=tmp_path)
        assert shown.returncode == 0 and "crd" in shown.stdout
    module = subprocess.run([sys.executable, "-m", "nova.crd", "--help"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=60)
    assert module.returncode == 0 and "usage:" in module.stdout
    assert list(tmp_path.iterdir()) == []  # no file named --help (issue 14, bug 7)


def test_help_names_every_command():
    shown = nova("--help").stdout
    for command in ("run", "validate", "show", "symbols", "crd"):
        assert f"    {command} " in shown


# --- nova run: what must fail early and clearly ----------------------------------------------

def test_run_with_an_unknown_symbol_fails_before_any_worker_with_the_reason(tmp_path):
    """Issue 14, bug 5: exit 0 with 'no complete trial (see logs)' and the reason in prep.log."""
    manifest = small_run_manifest(symbols=("AAPL", "TSLA"), workers=2)
    manifest["spec"]["data"] = {"source": "bundled", "symbols": ["AAPL", "TSLA"]}
    out = tmp_path / "out"
    result = nova("run", str(write(tmp_path, manifest)), "--out", str(out), "--no-progress")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "unknown symbol 'TSLA' for data.source 'bundled'; available:" in result.stderr
    assert not (out / "logs").exists() and not (out / "optuna.db").exists()  # nothing was started


def test_run_with_a_file_source_that_does_not_exist_says_so(tmp_path):
    manifest = small_run_manifest(symbols=("AAA",), workers=2)
    manifest["spec"]["data"] = {"source": "file", "uri": str(tmp_path / "nowhere"), "symbols": ["AAA"]}
    result = nova("run", str(write(tmp_path, manifest)), "--out", str(tmp_path / "out"), "--no-progress")
    assert result.returncode == 2
    assert f"data.uri '{tmp_path / 'nowhere'}' does not exist" in result.stderr
    assert "unknown symbol" not in result.stderr


def test_run_warm_started_from_a_folder_that_is_no_run_says_so_before_anything_starts(tmp_path):
    (tmp_path / "old").mkdir()
    out = tmp_path / "out"
    result = nova("run", str(write(tmp_path, small_run_manifest())), "--out", str(out), "--no-progress",
                  "--warm-start-from", str(tmp_path / "old"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"--warm-start-from {tmp_path / 'old'}: not the output folder of a finished `nova run`" in result.stderr
    assert "Traceback" not in result.stderr and not out.exists()


def test_run_into_an_output_folder_that_cannot_be_written(tmp_path):
    """Issue 14, bug 6: a raw PermissionError traceback. (Run as root here, so the folder is made
    unwritable by being under a file.)"""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    path = write(tmp_path, small_run_manifest())
    result = nova("run", str(path), "--out", str(blocker / "out"), "--no-progress")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"output folder {blocker / 'out'} cannot be written" in result.stderr


def test_run_with_an_unusable_optuna_db_names_the_file_and_does_not_retry(tmp_path):
    """Issue 14, bug 6: five retries, then 'cannot use the Optuna storage at localhost'."""
    out = tmp_path / "out"
    (out / "optuna.db").mkdir(parents=True)  # cannot be opened as a database, even by root
    result = nova("run", str(write(tmp_path, small_run_manifest())), "--out", str(out), "--no-progress")
    assert result.returncode == 2, result.stderr
    assert f"cannot use the Optuna storage at {(out / 'optuna.db').resolve()}" in result.stderr
    assert "localhost" not in result.stderr and "retry" not in result.stderr


# --- dev/bootstrap ----------------------------------------------------------------------------

def test_bootstrap_without_python_312_says_so_once(tmp_path):
    """Issue 14, bug 7: `line 19: : command not found` after its own error."""
    (tmp_path / "dev").mkdir()
    shutil.copy(REPO / "dev" / "bootstrap", tmp_path / "dev" / "bootstrap")
    bare = tmp_path / "bin"  # a PATH with bash and coreutils but no Python 3.12+
    bare.mkdir()
    for tool in ("bash", "dirname"):
        os.symlink(shutil.which(tool), bare / tool)
    env = {"PATH": str(bare), "HOME": str(tmp_path)}
    if Path("/usr/bin/python3.12").exists() or Path("/usr/local/bin/python3.12").exists():
        pytest.skip("this machine has a system Python 3.12 the script would find")
    result = subprocess.run(["bash", str(tmp_path / "dev" / "bootstrap")], capture_output=True, text=True,
                            env=env, timeout=60)
    assert result.returncode != 0
    assert "error: Python 3.12 or newer is needed" in result.stderr
    assert "command not found" not in result.stderr, result.stderr
    assert not (tmp_path / ".venv").exists()


# --- a worker that crashes --------------------------------------------------------------------

CRASH_HOOK = textwrap.dedent("""
    # Loaded by every interpreter of the test run (parent and spawned workers): worker 1 raises an
    # unexpected error as soon as it starts working, the kind no handler expects.
    import os
    if os.environ.get("NOVA_TEST_CRASH_WORKER"):
        import nova_trainer.tuning.worker as worker
        real = worker.run_worker
        def run_worker(run, storage, index, symbols, *args, **kwargs):
            if index == int(os.environ["NOVA_TEST_CRASH_WORKER"]):
                raise ValueError("injected crash for the test")
            return real(run, storage, index, symbols, *args, **kwargs)
        worker.run_worker = run_worker
""")


@pytest.mark.slow
def test_a_crashed_worker_is_named_on_the_terminal_its_traceback_kept_and_the_exit_is_not_0(tmp_path):
    """Issue 14, bug 2: the log file was closed under sys.stderr before the exception reached
    multiprocessing ('lost sys.stderr', an empty log), and the run exited 0 on the other worker."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(CRASH_HOOK)
    env = {**os.environ, "NOVA_TEST_CRASH_WORKER": "1",
           "PYTHONPATH": os.pathsep.join([str(hook), *filter(None, [os.environ.get("PYTHONPATH")])])}
    out = tmp_path / "out"
    path = write(tmp_path, small_run_manifest(symbols=("AAA",), trials=3, workers=2))
    result = nova("run", str(path), "--out", str(out), "--no-progress", env=env, timeout=600)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "lost sys.stderr" not in result.stderr and "closed file" not in result.stderr
    died = [line for line in result.stderr.splitlines() if "worker-1 died" in line]
    assert died == [f"error: worker-1 died: ValueError: injected crash for the test "
                    f"(log: {out / 'logs' / 'worker-1.log'})"], result.stderr
    log = (out / "logs" / "worker-1.log").read_text()
    assert "Traceback" in log and "ValueError: injected crash for the test" in log
    assert "AAA" in result.stdout and "AAA/model.ubj" in result.stdout  # worker 0 still did the work


def test_the_report_is_a_standards_mode_page(tmp_path):
    """Issue 14, bug 8: without a doctype each plot was as tall as the window (quirks mode)."""
    import optuna

    from nova.manifest import parse_run
    from nova.spec import resolve
    from nova_trainer.local.report import write_report
    from nova_trainer.tuning.storage import open_storage
    from nova_trainer.tuning.study import open_study

    run = resolve(parse_run(small_run_manifest(symbols=("AAA",))))
    storage = open_storage(f"sqlite:///{tmp_path / 'o.db'}", 1, 4)
    study = open_study(run, "AAA", storage)
    for value in (0.51, 0.53, 0.52):
        trial = study.ask({"eta": optuna.distributions.FloatDistribution(0.01, 0.3)})
        trial.report(value, 0)
        study.tell(trial, value)
    page = write_report(run, storage, tmp_path).read_text()
    assert page.startswith("<!DOCTYPE html>")
