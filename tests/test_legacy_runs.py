"""Runs written before the package was regrouped (their config.yaml names the old ``_target_`` paths) still
evaluate, generate, resume and report. The fixtures were written by rnnlab at commit c01bd7d."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from helpers import ROOT, run_cli
from rnnlab.app.rundirs import LEGACY_TARGETS, load_run_config

FIXTURES = ROOT / "tests" / "fixtures" / "legacy_runs"
OLD_ROOT = "/tmp/oldrun"  # where the fixtures were written


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
