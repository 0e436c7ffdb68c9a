"""Runs written before the package was regrouped (their config.yaml names the old ``_target_`` paths) still
evaluate, generate, resume and report. The fixtures were written by rnnlab at commit c01bd7d.

Beside them, a run written at commit 9f1a832 (``today_9f1a832``: ``run.json``, ``.hydra/``, both checkpoints,
TensorBoard events), before ``rnnlab.runs.record`` was split: stopped by SIGTERM in its second epoch, so
``rnnlab runs`` lists and shows it interrupted, and it evaluates, generates and resumes as the old ones do."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT, cli_env, run_cli
from rnnlab.app.rundirs import LEGACY_TARGETS, load_run_config

FIXTURES = ROOT / "tests" / "fixtures" / "legacy_runs"
OLD_ROOT = "/tmp/oldrun"  # where the fixtures were written
# src/train.py data=sine trainer.max_epochs=3 model.hidden_size=4 threads=1 +trainer.limit_{train,val,test}_batches=
# 3, 2, 2; stopped by SIGTERM as soon as its first last.ckpt was written
TODAY = FIXTURES / "today_9f1a832"
TODAY_ROOT = "/tmp/todayrun"  # its RNNLAB_ROOT
TODAY_RUN = "logs/sine/lstm-builtin-h4/seed42/version_0"  # its run directory below that root
TODAY_ID = "66eaea8116e04fe68cb1d8331a6e5b54"


def legacy_run(tmp_path: Path, task: str) -> Path:
    """A copy of the fixture run of ``task``, its paths moved under ``tmp_path`` (its targets untouched)."""
    run_dir = tmp_path / "logs" / task / "legacy"
    shutil.copytree(FIXTURES / task, run_dir)
    config = run_dir / "config.yaml"
    config.write_text(
        config.read_text().replace(f"{OLD_ROOT}/logs/{task}/", f"{run_dir}/../").replace(OLD_ROOT, str(tmp_path))
    )
    return run_dir


def test_the_fixtures_name_the_old_module_paths():
    text = "".join((FIXTURES / task / "config.yaml").read_text() for task in ("mnist1d", "sine"))
    for old in ("rnnlab.diagnostics.", "rnnlab.figures.", "rnnlab.views.", "rnnlab.synthetic."):
        assert old in text and old in LEGACY_TARGETS


def test_old_targets_load_as_their_new_homes(tmp_path):
    cfg = load_run_config(legacy_run(tmp_path, "sine"))
    assert cfg.data._target_ == "rnnlab.data.SineDataModule"
    assert cfg.callbacks.gradient_diagnostics._target_ == "rnnlab.callbacks.GradientDiagnostics"
    from hydra.utils import get_class

    for node in (cfg.data, *cfg.callbacks.values()):
        if node is not None and "_target_" in node:
            get_class(node._target_)  # importable


@pytest.mark.slow
def test_an_old_run_evaluates_generates_resumes_and_reports(tmp_path):
    mnist = legacy_run(tmp_path, "mnist1d")
    evaluated = run_cli("eval.py", f"ckpt_path={mnist / 'checkpoints' / 'last.ckpt'}", root=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert "eval test/acc=" in evaluated.stdout

    sine = legacy_run(tmp_path, "sine")
    generated = run_cli("generate.py", f"ckpt={sine / 'checkpoints' / 'last.ckpt'}", "length=5", root=tmp_path)
    assert generated.returncode == 0, generated.stderr[-2000:]
    assert "generate length=5 mse=" in generated.stdout

    resumed = run_cli(
        "train.py", f"ckpt_path={sine / 'checkpoints' / 'last.ckpt'}", "trainer.max_epochs=2", root=tmp_path
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    from rnnlab.report import write_report

    groups = write_report(tmp_path / "logs", tmp_path / "report", tensorboard=False)
    assert {group.task for group in groups} == {"mnist1d", "sine"}


def todays_run(tmp_path: Path) -> Path:
    """A copy of the run written at 9f1a832, at the same place below ``tmp_path`` as below its old root, the
    paths in its text files (run.json, config.yaml, .hydra/, train.log) moved along."""
    run_dir = tmp_path / TODAY_RUN
    shutil.copytree(TODAY, run_dir)
    for path in run_dir.rglob("*"):
        if path.suffix in (".json", ".yaml", ".log"):
            path.write_text(path.read_text().replace(TODAY_ROOT, str(tmp_path)))
    return run_dir


def runs_cli(*args: str, root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rnnlab.runs", *args],
        cwd=root,
        env=cli_env(root),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_todays_run_is_listed_and_shown(tmp_path):
    run_dir = todays_run(tmp_path)
    listed = runs_cli("--dir", str(tmp_path / "logs"), root=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[1].split()[:3] == [TODAY_ID[:8], "lstm-builtin-h4", "interrupted"]
    shown = runs_cli("show", "--json", "--dir", str(tmp_path / "logs"), TODAY_ID[:8], root=tmp_path)
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert record["schema"] == 1 and record["dir"] == str(run_dir) and record["status"] == "interrupted"
    assert record["params"]["model.hidden_size"] == 4 and record["epoch"] == 1 and record["metrics"]["val/mse"] > 0
    assert record["checkpoints"] == {"best": None, "last": None}  # an interrupted run names none
    text = runs_cli("show", "--dir", str(tmp_path / "logs"), TODAY_ID[:8], root=tmp_path)
    assert text.returncode == 0 and "9f1a832a0d9e9d0353b858e89e073ffcc3e601b8 (clean)" in text.stdout


@pytest.mark.slow
def test_todays_run_evaluates_generates_and_resumes(tmp_path):
    run_dir = todays_run(tmp_path)
    last = run_dir / "checkpoints" / "last.ckpt"
    evaluated = run_cli("eval.py", f"ckpt_path={last}", root=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert "eval test/loss=" in evaluated.stdout and "test/mse=" in evaluated.stdout
    generated = run_cli("generate.py", f"ckpt={last}", "length=5", root=tmp_path)
    assert generated.returncode == 0, generated.stderr[-2000:]
    assert "generate length=5 mse=" in generated.stdout

    resumed = run_cli("train.py", f"ckpt_path={last}", root=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["id"] == TODAY_ID and record["status"] == "completed" and record["epoch"] == 3
    assert [entry["status"] for entry in record["resumes"]] == ["completed"]
    assert record["overrides"][:4] == ["data=sine", "trainer.max_epochs=3", "model.hidden_size=4", "threads=1"]
    assert record["metrics"]["test/mse"] > 0
    assert Path(record["checkpoints"]["best"]).is_file() and Path(record["checkpoints"]["last"]).is_file()

    listed = runs_cli("list", "--json", "--dir", str(tmp_path / "logs"), root=tmp_path)
    assert listed.returncode == 0, listed.stderr
    kinds = sorted((entry["kind"], entry["status"]) for entry in json.loads(listed.stdout))
    assert kinds == [("eval", "completed"), ("generate", "completed"), ("train", "completed")]

    from rnnlab.report import write_report

    groups = write_report(tmp_path / "logs", tmp_path / "report", tensorboard=False)
    assert {group.task for group in groups} == {"sine"}
