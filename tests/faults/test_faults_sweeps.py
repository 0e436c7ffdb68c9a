"""Faults of sweeps as users run them: the README's sweep commands in the order shown, best.yaml's command.

Commands run as a user would (real Optuna storage) under ``RNNLAB_BUDGET=tiny``; in this process where the
process boundary is not what a test is about (tests/inprocess.py).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import ROOT, cli_env
from inprocess import run_main

pytestmark = pytest.mark.slow


def budget_env(root: Path) -> dict[str, str]:
    """A user's environment with logs under ``root``, ``python`` the suite's interpreter, the tiny budget."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**cli_env(root), "RNNLAB_BUDGET": "tiny", "PATH": path}


def readme_sweeps() -> list[list[str]]:
    """Every ``make sweep`` line of README.md in order, as the arguments ``make sweep`` gives src/train.py."""
    commands = []
    for line in (ROOT / "README.md").read_text().splitlines():
        if not line.startswith("make sweep") or "# (cluster)" in line:  # (a cluster's: tests/cluster)
            continue
        words = shlex.split(line, comments=True)
        given = next((word.partition("=")[2] for word in words if word.startswith("ARGS=")), "")
        commands.append(["src/train.py", "-m", "hparams_search=optuna", *shlex.split(given)])  # Makefile's sweep
    return commands


@pytest.fixture(scope="module")
def readme_sweep_results(tmp_path_factory) -> tuple[Path, list[subprocess.CompletedProcess]]:
    """RNNLAB_ROOT and the result of README's first sweep command (``make sweep``), run in that root. (All of
    README's commands, in order, are tests/test_doc_commands.py's.)"""
    root = tmp_path_factory.mktemp("readme-sweeps")
    script, *args = readme_sweeps()[0]
    return root, [run_main([str(ROOT / script), *args], env=budget_env(root), cwd=str(ROOT))]


def test_best_yaml_first_command_as_printed_trains_the_best_setting_in_full(readme_sweep_results):
    root, results = readme_sweep_results
    assert results[0].returncode == 0, results[0].stderr[-2000:]
    printed = (root / "multirun" / "mnist1d" / "mnist1d-lstm" / "best.yaml").read_text().splitlines()
    first = next(i for i, line in enumerate(printed) if re.match(r"\w*command:", line))
    assert printed[first].startswith("command:")  # the full training comes first, the trial's reproduction second
    # the command is one line of its own (a literal block), copied as printed
    command = printed[first].partition(":")[2].strip()
    if command in ("|-", "|"):
        command = printed[first + 1].strip()
    assert command.startswith("python src/train.py ") and "hparams_search" not in command
    argv = shlex.split(command)  # as a shell splits it; run in this process
    result = run_main([str(ROOT / argv[1]), *argv[2:]], env=budget_env(root), cwd=str(ROOT))
    assert result.returncode == 0, result.stderr[-3000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert "test/acc=" in summary and "test/loss=" in summary, result.stdout[-2000:]
    run_dir = Path(summary.rpartition("run_dir=")[2])
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and run_dir.is_relative_to(root)


# ------------------------------------------------------------------------------ PostgreSQL with a bare URL

from test_sweep import postgres_url  # noqa: E402, F401 (the fixture: a throwaway server, skipped where none starts)


def test_a_sweep_on_a_bare_postgresql_url_uses_the_installed_driver(tmp_path, postgres_url):  # noqa: F811
    import optuna

    bare = postgres_url.replace("postgresql+psycopg2://", "postgresql://")  # what most users write
    args = ["-m", "hparams_search=optuna", f"hydra.sweeper.storage='{bare}'"]
    result = run_main([str(ROOT / "src" / "train.py"), *args], env=budget_env(tmp_path), cwd=str(ROOT))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "on postgresql://postgres@/postgres?host=" in result.stdout  # shown as given (no driver added)
    study = optuna.load_study(study_name="mnist1d-lstm", storage=postgres_url)
    assert [trial.state.name for trial in study.trials] == ["COMPLETE"] * 2


# ------------------------------------------------------------------------------ Ctrl-C as parallel trials start


def test_ctrl_c_to_a_two_worker_sweep_as_its_trials_start_records_them_lost(tmp_path):
    import optuna

    # Both trials are held as their runs start (tests/fixtures/pausing.py PauseAtStart, one marker per worker),
    # then Ctrl-C reaches the whole process group, as from a terminal: the sweep and both joblib workers.
    paused = tmp_path / "paused"
    args = [
        "-m", "hparams_search=optuna", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_trials=2",
        "+callbacks.pause._target_=pausing.PauseAtStart",
    ]  # fmt: skip
    env = {**budget_env(tmp_path), "PYTHONPATH": str(ROOT / "tests" / "fixtures"), "RNNLAB_TEST_PAUSE": str(paused)}
    process = subprocess.Popen(
        [sys.executable, "src/train.py", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while len(list(tmp_path.glob("paused.*"))) < 2:
            assert process.poll() is None, process.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the trials never started"
            time.sleep(0.1)
        os.killpg(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, err[-3000:]
    assert err.strip().splitlines()[-1].startswith("error: sweep interrupted by SIGINT")
    assert "failed:" not in out  # no trial reported failed by what the interruption did to its worker
    study = optuna.load_study(study_name="mnist1d-lstm", storage=f"sqlite:///{tmp_path}/multirun/optuna.db")
    started = [trial for trial in study.trials if trial.state.name != "WAITING"]
    assert len(started) == 2 and len(study.trials) == 4  # both lost, both queued again
    for trial in started:
        assert trial.state.name == "FAIL" and trial.user_attrs["lost"] is True
        assert trial.user_attrs["error"] == "lost: the sweep was interrupted by SIGINT"
    for trial_dir in (tmp_path / "multirun" / "mnist1d" / "mnist1d-lstm").glob("trial_*"):
        assert not (trial_dir / "traceback.txt").exists()  # kept for trials that failed on their own
