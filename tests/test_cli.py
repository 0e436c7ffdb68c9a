"""The command line as users meet it: src/train.py and src/eval.py as commands (run in-process: tests/inprocess.py)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from helpers import TINY, read_scalars, run_cli


@pytest.mark.parametrize(
    "override, message",
    [
        ("model=transformer", "model='transformer' is not allowed; allowed: gru, lstm, vanilla"),
        ("data=cifar", "data='cifar' is not allowed; allowed: adding, adding_dynamic, mnist1d, sine"),
        ("model.hidden_size=0", "model.hidden_size=0 is not allowed; must be > 0"),
        ("model.hidden_size=-3", "model.hidden_size=-3 is not allowed; must be > 0"),
        ("model.optimizer.lr=0", "model.optimizer.lr=0 is not allowed; must be > 0"),
        ("model.optimizer.lr=-0.1", "model.optimizer.lr=-0.1 is not allowed; must be > 0"),
        ("model.readout=attention", "model.readout='attention' is not allowed; allowed: flatten, last, mean"),
        ("model.impl=fast", "model.impl='fast' is not allowed; allowed: builtin, custom"),
        ("test_ckpt=final", "test_ckpt='final' is not allowed; allowed: best, last"),
        ("model.readout_dropout=1", "model.readout_dropout=1 is not allowed; must be < 1"),
        ("model.label_smoothing=-0.1", "model.label_smoothing=-0.1 is not allowed; must be >= 0"),
        ("ckpt_path=missing.ckpt", "ckpt_path='missing.ckpt' is not a file"),
    ],
)
def test_bad_input_fails_early_with_one_line_and_writes_nothing(tmp_path, override, message):
    result = run_cli("train.py", override, root=tmp_path)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), lines
    assert list(tmp_path.iterdir()) == []  # no logs/, no data/, no run directory


@pytest.mark.slow
def test_train_resume_and_eval_from_the_command_line(tmp_path, data_dir):
    # A constant learning rate, so the finished run can be extended by an epoch.
    args = [*TINY, "model=gru", "~model/scheduler", "trainer.max_epochs=2", f"paths.data_dir={data_dir}"]
    first = run_cli("train.py", *args, root=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    run_dir = tmp_path / "logs" / "mnist1d" / "gru-builtin-h8" / "seed42" / "version_0"
    assert "[rnnlab] gru-builtin-h8" in first.stdout and str(run_dir) in first.stdout
    assert {"val/acc", "test/acc"} <= set(read_scalars(run_dir))

    second = run_cli("train.py", *args, root=tmp_path)  # same settings: a new version, nothing overwritten
    assert second.returncode == 0, second.stderr[-3000:]
    assert (run_dir.parent / "version_1" / "config.yaml").is_file()
    assert not (tmp_path / "multirun").exists()  # a single run reserves no sweep directory

    # Resume a finished 2-epoch run to 3 epochs, in its own directory.
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    refused = run_cli("train.py", f"ckpt_path={ckpt}", "model=lstm", root=tmp_path)
    assert refused.returncode != 0 and "cannot change on resume" in refused.stderr
    resumed = run_cli("train.py", f"ckpt_path={ckpt}", "trainer.max_epochs=3", root=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    val_steps = [step for step, _ in read_scalars(run_dir)["val/acc"]]
    assert len(val_steps) == 3 == len(set(val_steps))  # epochs 0, 1 and the resumed epoch 2
    assert not (run_dir.parent / "version_2").exists()

    evaluated = run_cli("eval.py", f"ckpt_path={ckpt}", root=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "[rnnlab] eval test/acc=" in evaluated.stdout
    assert (run_dir / "eval" / "version_0").is_dir()


def test_unknown_checkpoint_location_is_explained(tmp_path):
    stray = tmp_path / "stray.ckpt"
    stray.write_bytes(b"")
    result = run_cli("eval.py", f"ckpt_path={stray}", root=tmp_path)
    assert result.returncode != 0
    assert "is not inside a run directory" in result.stderr.strip().splitlines()[-1]
    assert not Path(tmp_path / "logs").exists()


@pytest.mark.slow
def test_plain_multirun_writes_one_directory_per_job_and_never_shares_a_directory(tmp_path, data_dir):
    # Multiruns started in the same second as this one (their folders made beforehand, for the next minute)
    # keep their folders to themselves: this one takes <timestamp>_2, read by its joblib workers as well.
    tasks = tmp_path / "multirun" / "mnist1d"
    now = datetime.now()
    taken = [tasks / (now + timedelta(seconds=s)).strftime("%Y-%m-%d_%H-%M-%S") for s in range(-1, 60)]
    for folder in taken:
        folder.mkdir(parents=True)
        (folder / "another_multirun").write_text("")
    result = run_cli(
        "train.py", "-m", "model=gru,vanilla", *TINY, "test=false", f"paths.data_dir={data_dir}",
        "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", root=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert all([p.name for p in folder.iterdir()] == ["another_multirun"] for folder in taken)
    (sweep_dir,) = set(tasks.iterdir()) - set(taken)
    assert sweep_dir.name.endswith("_2") and sweep_dir.name[:-2] in {p.name for p in taken}
    assert {"0", "1", "multirun.yaml"} <= {p.name for p in sweep_dir.iterdir()}
    assert all({"val/acc", "val/acc_best"} <= set(read_scalars(sweep_dir / job)) for job in ("0", "1"))


def test_a_multirun_directory_is_reserved_atomically(tmp_path):
    from rnnlab.app.rundirs import _new_sweep_dir

    wanted = tmp_path / "multirun" / "mnist1d" / "2026-12-03_10-00-00"
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(_new_sweep_dir, [str(wanted)] * 8))
    assert sorted(got) == sorted([str(wanted), *(f"{wanted}_{n}" for n in range(2, 9))])
    assert all(Path(path).is_dir() for path in got)


def test_help_and_the_sweep_parent_do_not_import_torch(tmp_path):
    """`--help` stays fast, and a sweep's parent process (sweeper, storage, results) leaves torch to the
    trial processes: with parallel trials nobody pays for importing it twice."""
    import subprocess
    import sys

    from helpers import ROOT

    probe = (
        "import runpy, sys\n"
        "sys.argv = ['train.py', '--help']\n"
        "try:\n"
        "    runpy.run_path('src/train.py', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "import hydra_plugins.rnnlab_sweeper.optuna_sweeper, rnnlab.sweep, rnnlab.devices\n"
        "heavy = sorted(m for m in ('torch', 'pytorch_lightning') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "HEAVY []" in result.stdout, result.stdout[-2000:] + result.stderr[-2000:]
