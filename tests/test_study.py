"""make study: every cell tuned with one budget, confirmed over seeds, reported with CIs and Welch's t-test.

End to end through ``src/study.py`` as a user runs it (real Hydra, real sweeps on SQLite, real Lightning
runs, run.json records, TensorBoard events read back), at a tiny size; the report's numbers are recomputed
here from the run records. Interruption: SIGINT after the first sweep, SIGKILL during the confirm runs,
then the same command again.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import optuna
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from scipy import stats

from helpers import CONF, ROOT, run_cli, start_cli
from rnnlab import budget
from rnnlab.errors import ConfigError
from rnnlab.runs.store import find_records, read_record
from rnnlab.study import make_plan
from rnnlab.study.plan import cap_space
from rnnlab.study.stats import summarize, verdict, welch

CELLS = ["vanilla", "gru"]
TINY_STUDY = [
    f"study.cells=[{','.join(CELLS)}]",
    *budget.count_overrides("study."),  # trials, trial_epochs, epochs, seeds
    "study.jobs=1",
    "study.params={model.hidden_size:'int(interval(4, 10))'}",
    *(arg for arg in budget.overrides() if "_batches=" in arg),  # the study sets the epochs and searches sizes
    "callbacks.gradient_diagnostics.every_n_epochs=1",
    "threads=1",
]


def study_dir(root: Path, name: str = "default") -> Path:
    return root / "multirun" / "study" / "mnist1d" / name


def study_args(data_dir: Path, *extra: str) -> list[str]:
    return [*TINY_STUDY, f"paths.data_dir={data_dir}", *extra]


def start_study(root: Path, data_dir: Path, *extra: str) -> subprocess.Popen:
    return start_cli("study.py", *study_args(data_dir, *extra), root=root)


def confirm_records(root: Path) -> list[dict]:
    return sorted(find_records(study_dir(root) / "confirm"), key=lambda r: r["dir"])


def wait_for(condition, process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def plan_for(tmp_path: Path, monkeypatch, *overrides: str):
    """The study's plan as src/study.py would make it, composed in this process (no run)."""
    monkeypatch.setenv("RNNLAB_ROOT", str(tmp_path))
    GlobalHydra.instance().clear()
    # No HydraConfig of an earlier composition: with one, merging study.yaml's hydra.run.dir over train's
    # resolves train's ${run_dir:...}, which reserves a logs/.../version_<n> directory (as a run would).
    HydraConfig.instance().cfg = None
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("study", overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return make_plan(cfg, cfg.hydra), cfg


# ---------------------------------------------------------------------------------------- statistics


def test_summary_is_the_t_interval_of_the_mean():
    values = [0.91, 0.95, 0.94]
    s = summarize(values)
    half = stats.t.ppf(0.975, 2) * np.std(values, ddof=1) / math.sqrt(3)
    assert s.n == 3 and s.mean == pytest.approx(np.mean(values)) and s.std == pytest.approx(np.std(values, ddof=1))
    assert (s.low, s.high) == pytest.approx((np.mean(values) - half, np.mean(values) + half))
    one = summarize([0.9])
    assert one.n == 1 and math.isnan(one.low) and one.std == 0.0


def test_an_accuracy_interval_stays_in_its_range_and_few_seeds_are_explained():
    from rnnlab.report.units import MetricFormat
    from rnnlab.study.report import interval_notes

    fmt = MetricFormat("test/acc")
    wide = summarize([0.02, 0.10, 0.30], fmt.bounds)  # 3 seeds far apart: the t interval reaches below 0%
    assert wide.low == 0.0 and wide.clipped and wide.high < 1.0
    assert fmt.interval(wide.low, wide.high, wide.clipped) == f"[0.00%, {wide.high * 100:.2f}%]*"
    assert fmt.mean_std(0.98633, 0.0046, 3) == "98.63% ± 0.46" and fmt.mean_std(0.5, 0.0, 1) == "50.00%"
    notes = "\n".join(interval_notes(fmt, [wide, summarize([0.9, 0.92], fmt.bounds)]))
    assert "clipped to what test/acc can be ([0.00%, 100.00%])" in notes
    assert "t = 12.71 for 2 seeds, 4.30 for 3 seeds (1.96 for very many)" in notes
    mse = MetricFormat("test/mse")
    assert not mse.percent and mse.value(0.000015) == "1.5e-05" and mse.clip(-0.1, 0.2) == (0.0, 0.2, True)


def test_welch_and_its_verdict():
    a, b = [0.90, 0.91, 0.92], [0.95, 0.96, 0.955]
    d = welch("vanilla", a, "gru", b)
    expected = stats.ttest_ind(b, a, equal_var=False)
    assert d.p == pytest.approx(expected.pvalue) and d.diff == pytest.approx(np.mean(b) - np.mean(a))
    assert d.significant
    text = verdict(d, higher_is_better=True, scale=100, unit="points")
    assert text.startswith("gru vs vanilla: +4.50 points, 95% CI [+") and text.endswith("gru better, significant at 5%")
    assert "±" not in text  # ± is a standard deviation everywhere; an interval is written [low, high]
    # lower is better (an MSE): the smaller mean wins
    assert verdict(d, higher_is_better=False).endswith("vanilla better, significant at 5%")
    close = welch("gru", [0.95, 0.96, 0.955], "lstm", [0.951, 0.962, 0.95])
    assert not close.significant and verdict(close, higher_is_better=True).endswith("not significant at 5%")
    small = welch("gru", [1e-4, 2e-4, 1.5e-4], "lstm", [4e-4, 5e-4, 4.5e-4])  # MSEs: significant digits
    assert verdict(small, higher_is_better=False).startswith("lstm vs gru: +0.0003, 95% CI [")
    assert "needs ≥ 2 seeds" in verdict(welch("a", [0.9], "b", [0.8, 0.7]), higher_is_better=True)
    assert "no spread" in verdict(welch("a", [0.9, 0.9], "b", [0.8, 0.8]), higher_is_better=True)


def test_importances_of_a_study_with_too_few_trials():
    from rnnlab.study.report import _importances

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert _importances(study, 1) == ({}, "1 complete trial(s); importances need ≥ 2")
    study.optimize(lambda t: t.suggest_float("x", 0, 1) + t.suggest_int("h", 1, 9) * 0.01, n_trials=6)
    values, _ = _importances(study, 7)
    assert set(values) == {"x", "h"} and sum(values.values()) == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------- the plan


def test_plan_commands(tmp_path, monkeypatch):
    plan, _ = plan_for(
        tmp_path,
        monkeypatch,
        "data=adding",
        "model.readout=last",
        "model.hidden_size=32",
        "study.params={model.optimizer.lr:'tag(log, interval(1e-3, 1e-1))',model.dropout:0.0}",
        "hydra/sweeper/sampler=random",
        "hydra.sweeper.grace_period=5",
        "hydra.run.dir=" + str(tmp_path / "mine"),
    )
    assert plan.dir == tmp_path / "mine" and plan.task == "adding" and plan.metric == "val/mse_best"
    sweep = plan.sweep_command("gru", Path("train.py"))
    assert sweep[2:5] == ["-m", "hparams_search=optuna", "model=gru"]
    # the searched hidden size is not fixed by the user's model.hidden_size=32; study.params wins over the default
    assert "model.hidden_size=32" not in sweep and "model.hidden_size=tag(log, int(interval(8, 256)))" in sweep
    assert "model.optimizer.lr=tag(log, interval(1e-3, 1e-1))" in sweep and "model.readout=last" in sweep
    assert "hydra/sweeper/sampler=random" in sweep and "hydra.sweeper.grace_period=5" in sweep
    assert not any(arg.startswith("hydra.run.dir") for arg in sweep)
    assert f"hydra.sweeper.storage='sqlite:///{tmp_path}/mine/optuna.db'" in sweep
    assert sweep[-4:-2] == ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]  # study.jobs=2
    plan.sweep_hydra.append("hydra/launcher=basic")  # the user's launcher wins (one value per group)
    assert "hydra/launcher=joblib" not in plan.sweep_command("gru", Path("train.py"))
    confirm = plan.confirm_command("gru", {"model.hidden_size": 40, "model.optimizer.lr": 0.01}, 1, Path("train.py"))
    assert "trainer.max_epochs=60" in confirm and "seed=1" in confirm and "model.dropout=0.0" in confirm
    assert "model.hidden_size=40" in confirm and "model.hidden_size=32" not in confirm
    assert not any(arg.startswith(("hparams_search", "hydra.sweeper")) for arg in confirm)
    # another best or budget -> another directory; the same -> the same
    base = plan.confirm_dir("gru", {"model.hidden_size": 40})
    assert base == plan.confirm_dir("gru", {"model.hidden_size": 40})
    assert base != plan.confirm_dir("gru", {"model.hidden_size": 41})


def test_plan_commands_with_the_slurm_launcher(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"  # srun is only looked up here (the command is not run)
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    plan, _ = plan_for(tmp_path, monkeypatch, "study.launcher=slurm", "study.jobs=3", "study.srun=['--mem=3G']")
    sweep = plan.sweep_command("gru", Path("train.py"))
    assert not any(arg.startswith(("hydra/launcher=joblib", "hydra.launcher.n_jobs")) for arg in sweep)
    launcher = sweep[sweep.index("hydra/launcher=submitit_slurm") :]
    assert launcher[1:4] == [
        "hydra.launcher.name=default-gru",
        "hydra.launcher.array_parallelism=3",
        f"hydra.launcher.cpus_per_task={plan.threads}",
    ]
    # a launcher of the user's (its fields can be set only with it) replaces submitit_slurm; theirs come last
    gpu, _ = plan_for(
        tmp_path, monkeypatch, "study.launcher=slurm", "hydra/launcher=slurm_gpu", "hydra.launcher.mem_gb=4"
    )
    sweep = gpu.sweep_command("gru", Path("train.py"))
    assert "hydra/launcher=submitit_slurm" not in sweep and "hydra.launcher.name=default-gru" in sweep
    assert not any(arg.startswith("hydra.launcher.cpus_per_task") for arg in sweep)  # slurm_gpu's own 4
    assert sweep[-2:] == ["hydra/launcher=slurm_gpu", "hydra.launcher.mem_gb=4"]
    confirm = plan.confirm_command("gru", {"model.hidden_size": 40}, 1, Path("train.py"))
    srun = confirm[: confirm.index(sys.executable)]
    assert srun[:3] == ["srun", "--job-name=default-gru-seed1", "--ntasks=1"] and "--quit-on-interrupt" in srun
    assert f"--cpus-per-task={plan.threads}" in srun and f"threads={plan.threads}" in confirm
    assert srun[-1] == "--mem=3G"  # study.srun, after the study's own options
    # the same runs as locally: the same confirm directory, so a study can change its launcher and continue
    local, _ = plan_for(tmp_path, monkeypatch)
    assert local.confirm_command("gru", {"model.hidden_size": 40}, 1, Path("train.py")) == confirm[len(srun) :]


def test_the_slurm_launcher_needs_srun(tmp_path, tmp_path_factory, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path_factory.mktemp("no-slurm")))  # no srun (nor anything else) on PATH
    with pytest.raises(ConfigError) as caught:
        plan_for(tmp_path, monkeypatch, "study.launcher=slurm")
    assert str(caught.value) == "study.launcher=slurm needs SLURM's srun on PATH; allowed: study.launcher=local here"
    assert not any(tmp_path.iterdir())


def test_the_slurm_launcher_runs_trials_with_a_slurm_launcher_only(tmp_path, monkeypatch):
    with pytest.raises(ConfigError) as caught:
        plan_for(tmp_path, monkeypatch, "study.launcher=slurm", "hydra/launcher=joblib")
    assert str(caught.value) == (
        "hydra/launcher=joblib is not allowed with study.launcher=slurm; allowed: a SLURM launcher "
        "(hydra/launcher=submitit_slurm, slurm_gpu) or study.launcher=local"
    )
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["study.cells=[foo]"], "study.cells='foo' is not allowed; allowed: gru, lstm, vanilla"),
        (["study.cells=[]"], "study.cells=[] is not allowed"),
        (["study.cells=gru"], "study.cells='gru' is not allowed"),
        (["study.cells=[gru,gru]"], "each cell once"),
        (["study.seeds=0"], "study.seeds=0 is not allowed; must be >= 1"),
        (["study.trials=-1"], "study.trials=-1 is not allowed; must be >= 1"),
        (["study.epochs=1.5"], "study.epochs=1.5 is not allowed; must be an integer"),
        (["study.trial_epochs=inf"], "study.trial_epochs=inf is not allowed; must be an integer"),
        (["study.seeds=100000000"], "study.seeds=100000000 is not allowed; must be < 1001"),
        (["study.jobs=0"], "study.jobs=0 is not allowed"),
        (["study.name=../up"], "study.name='../up' is not allowed"),
        (["study.match=maybe"], "study.match='maybe' is not allowed; allowed: none, params"),
        (["study.max_params=-5"], "study.max_params=-5 is not allowed"),
        (["study.launcher=cloud"], "study.launcher='cloud' is not allowed; allowed: local, slurm"),
        (["study.srun=['partition=cpu']"], "study.srun=['partition=cpu'] is not allowed; give a list of srun options"),
        (["study.params=5"], "study.params=5 is not allowed; give a mapping"),
        (["study.params={model.optimizer.lr:'interval(1e-3'}"], "does not parse"),
        (["study.params={model.optimizer.lr:'glob(*)'}"], "is not a search space"),
        (["study.params={model.hiden:3}"], "'model.hiden' is not a key of the run config"),
        (["study.params={hydra.sweeper.n_trials:3}"], "the study sets it (use study.trials)"),
        (["study.match=params", "study.params={model.hidden_size:64}"], "needs model.hidden_size searched"),
        (["model=gru"], "model=gru is not allowed here; the study sets model (use study.cells)"),
        (["trainer.max_epochs=3"], "use study.trial_epochs and study.epochs"),
        (["seed=3"], "the study sets seed"),
        (["hydra.sweeper.n_trials=5"], "use study.trials"),
    ],
)
def test_wrong_values_are_named(tmp_path, monkeypatch, overrides, message):
    with pytest.raises(ConfigError) as caught:
        plan_for(tmp_path, monkeypatch, *overrides)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert not any(tmp_path.iterdir()), list(tmp_path.rglob("*"))


def test_a_study_tuned_with_other_settings_is_not_continued(tmp_path, monkeypatch):
    plan, _ = plan_for(tmp_path, monkeypatch, "study.trials=5")
    plan.check_settings()  # nothing there yet
    plan.save_settings()
    more, _ = plan_for(tmp_path, monkeypatch, "study.trials=9", "study.seeds=5", "study.epochs=3")
    more.check_settings()  # more trials, seeds or epochs continue it
    other, _ = plan_for(tmp_path, monkeypatch, "model.readout=last")
    with pytest.raises(
        ConfigError, match=r"was tuned with overrides=\[\], this command gives \['model.readout=last'\]"
    ):
        other.check_settings()
    with pytest.raises(ConfigError, match="study.trial_epochs=20, this command gives 3"):
        plan_for(tmp_path, monkeypatch, "study.trial_epochs=3")[0].check_settings()


def test_cap_space_keeps_the_tags():
    assert cap_space("tag(log, int(interval(8, 256)))", 100) == "tag(log, int(interval(8, 100)))"
    assert cap_space("choice(16, 32, 64)", 40) == "choice(16, 32)"
    with pytest.raises(ConfigError, match="below 8"):
        cap_space("int(interval(8, 256))", 5)


def test_match_params_caps_each_cell_under_one_ceiling(tmp_path, monkeypatch, data_dir):
    from hydra.utils import instantiate

    from rnnlab.app.compare import count_parameters
    from rnnlab.study.run import matched_caps

    overrides = ["study.match=params", f"paths.data_dir={data_dir}", "study.cells=[vanilla,gru,lstm]"]
    plan, cfg = plan_for(tmp_path, monkeypatch, *overrides)
    caps = matched_caps(plan, cfg)
    task = instantiate(cfg.data).task
    kwargs = {k: cfg.model[k] for k in ("impl", "num_layers", "dropout", "bidirectional", "readout")}
    ceiling = count_parameters(task, {**kwargs, "cell": "vanilla"}, 256)
    assert caps["vanilla"] == 256 and caps["lstm"] < caps["gru"] < 256
    for cell, hidden in caps.items():
        assert count_parameters(task, {**kwargs, "cell": cell}, hidden) <= ceiling
        if hidden < 256:
            assert count_parameters(task, {**kwargs, "cell": cell}, hidden + 1) > ceiling
    plan.hidden_caps = caps
    assert plan.search_space("lstm")["model.hidden_size"] == f"tag(log, int(interval(8, {caps['lstm']})))"


# ---------------------------------------------------------------------------------------- the command


@pytest.mark.parametrize(
    "args",
    [
        ["study.cells=[foo]"],
        ["study.seeds=0"],
        ["study.params={model.optimizer.lr:'tag(log, interval(1e-3'"],  # the override itself does not parse
        ["data=nope"],
        ["study.match=params", "study.max_params=100"],  # below every cell's smallest model
        ["study.launcher=cloud"],
    ],
)
def test_a_wrong_command_is_one_line_and_writes_nothing(tmp_path, args):
    done = run_cli("study.py", *args, root=tmp_path)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert not any(tmp_path.iterdir()), list(tmp_path.rglob("*"))


def check_finished_study(tmp_path: Path, data_dir: Path) -> None:
    """What a finished tiny study holds (the report's numbers recomputed from the runs it read), and that the
    same command once more tunes and trains nothing. Run at the end of the interrupted study's test: a study
    stopped twice must end exactly as one run straight through."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = study_dir(tmp_path)
    report = json.loads((out / "report.json").read_text())
    text = (out / "report.md").read_text()
    assert (out / "report.png").stat().st_size > 10_000

    # Tune: one Optuna study per cell with the same number of trials; best.yaml is what was confirmed.
    for cell in CELLS:
        study = optuna.load_study(study_name=f"default-{cell}", storage=f"sqlite:///{out / 'optuna.db'}")
        assert len([t for t in study.trials if not t.user_attrs.get("lost")]) == 2  # lost ones ran again
        best = max((t for t in study.trials if t.state.name == "COMPLETE"), key=lambda t: t.value)
        assert report["cells"][cell]["params"] == best.params
        assert report["cells"][cell]["trials"]["COMPLETE"] == sum(t.state.name == "COMPLETE" for t in study.trials)
        # trials validate only: no test metric in any trial's events
        for trial_dir in (tmp_path / "logs" / "mnist1d" / "sweeps" / f"default-{cell}").iterdir():
            accumulator = EventAccumulator(str(trial_dir))
            accumulator.Reload()
            assert not [tag for tag in accumulator.Tags()["scalars"] if tag.startswith("test/")]

    # Confirm: seeds x cells, each with a completed record naming the study as its parent.
    records = confirm_records(tmp_path)
    assert len(records) == len(CELLS) * 2
    assert all(r["status"] == "completed" and r["parent"]["kind"] == "study" for r in records)

    # The report's numbers, recomputed from the records.
    by_cell = {cell: [r for r in records if Path(r["dir"]).parent.name.startswith(cell + "-")] for cell in CELLS}
    for cell, cell_records in by_cell.items():
        values = [r["metrics"]["test/acc"] for r in sorted(cell_records, key=lambda r: r["dir"])]
        entry = report["cells"][cell]
        assert entry["values"] == pytest.approx(values)
        mean, std = np.mean(values), np.std(values, ddof=1)
        half = stats.t.ppf(0.975, len(values) - 1) * std / math.sqrt(len(values))
        assert entry["mean"] == pytest.approx(mean) and entry["std"] == pytest.approx(std)
        low, high = max(mean - half, 0.0), min(mean + half, 1.0)  # an accuracy's interval stays in [0, 1]
        assert entry["ci"] == pytest.approx([low, high]) and entry["ci_clipped"] == (
            (low, high) != (mean - half, mean + half)
        )
        assert f"| {cell} |" in text and f"{mean * 100:.2f}% ± {std * 100:.2f}" in text
        assert entry["seconds_per_run"] == pytest.approx(np.mean([r["duration_s"] for r in cell_records]))
    a = [r["metrics"]["test/acc"] for r in sorted(by_cell["vanilla"], key=lambda r: r["dir"])]
    b = [r["metrics"]["test/acc"] for r in sorted(by_cell["gru"], key=lambda r: r["dir"])]
    (pair,) = report["pairs"]
    if np.std(a) == 0 and np.std(b) == 0:
        assert pair["p"] is None and "no spread" in text
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = stats.ttest_ind(b, a, equal_var=False)
        assert pair["p"] == pytest.approx(expected.pvalue) and pair["diff"] == pytest.approx(np.mean(b) - np.mean(a))
        assert f"gru vs vanilla: {(np.mean(b) - np.mean(a)) * 100:+.2f} points, 95% CI [" in text

    # The report in TensorBoard: its text and its figure, read back.
    accumulator = EventAccumulator(str(out / "report"), size_guidance={"images": 0, "tensors": 0})
    accumulator.Reload()
    assert accumulator.Tags()["images"] == ["report"]
    assert "report/text_summary" in accumulator.Tags()["tensors"]

    # The same command again: nothing is tuned or trained again.
    ids = {r["dir"]: r["id"] for r in records}
    again = run_cli("study.py", *study_args(data_dir), root=tmp_path, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "tuning" not in again.stdout and again.stdout.count("finished earlier") == len(records)
    assert {r["dir"]: r["id"] for r in confirm_records(tmp_path)} == ids


def processes_of(root: Path) -> list[int]:
    """Live processes started with RNNLAB_ROOT=<root> (a study, its guards, sweeps and their workers)."""
    marker = f"RNNLAB_ROOT={root}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:  # gone, or not ours
            continue
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc")
def test_a_killed_study_leaves_no_process_behind(tmp_path, data_dir):
    # Two trials at a time: the sweep runs them in joblib worker processes, grandchildren of the study.
    study = start_study(tmp_path, data_dir, "study.jobs=2", "study.trials=4", "++trainer.limit_train_batches=200")
    wait_for(lambda: len(processes_of(tmp_path)) >= 5, study)  # study, guard, sweep, joblib's tracker and workers
    study.kill()
    study.communicate(timeout=60)
    deadline = time.monotonic() + 30
    while processes_of(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_of(tmp_path) == []


@pytest.mark.slow
def test_interrupted_study_continues_without_repeating_finished_work(tmp_path, data_dir):
    out = study_dir(tmp_path)
    # 1. Ctrl-C once the first cell's sweep has finished: the study stops with one line, exit code 130.
    first = start_study(tmp_path, data_dir)
    wait_for(lambda: (out / "tune" / f"default-{CELLS[0]}" / "best.yaml").is_file(), first)
    # A second study on the same directory while the first runs: one line, nothing written.
    busy = run_cli("study.py", *study_args(data_dir), root=tmp_path)
    assert busy.returncode == 1 and busy.stderr.strip().count("\n") == 0 and "in use by another study" in busy.stderr
    first.send_signal(signal.SIGINT)
    stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 130, stdout + stderr
    assert stderr.strip().splitlines()[-1].startswith("interrupted: rerun the same command")
    storage = f"sqlite:///{out / 'optuna.db'}"
    tuned_first = {
        (t.number, t.state.name, t.datetime_start)
        for t in optuna.load_study(study_name=f"default-{CELLS[0]}", storage=storage).trials
    }
    assert len(tuned_first) == 2

    # 2. Again, killed (SIGKILL) once the first confirm run has finished.
    second = start_study(tmp_path, data_dir)
    wait_for(lambda: any(r["status"] == "completed" for r in confirm_records(tmp_path)), second)
    second.kill()
    second.communicate(timeout=60)
    finished = {r["dir"]: r["id"] for r in confirm_records(tmp_path) if r["status"] == "completed"}
    assert finished

    # 3. The same command again completes; no finished trial or run is repeated.
    third = run_cli("study.py", *study_args(data_dir), root=tmp_path, timeout=600)
    assert third.returncode == 0, third.stdout + third.stderr
    for cell in CELLS:  # a trial lost to the interrupt is recorded as lost and run again; it does not count
        trials = optuna.load_study(study_name=f"default-{cell}", storage=storage).trials
        assert len([t for t in trials if not t.user_attrs.get("lost")]) == 2
    assert {
        (t.number, t.state.name, t.datetime_start)
        for t in optuna.load_study(study_name=f"default-{CELLS[0]}", storage=storage).trials
    } == tuned_first
    records = confirm_records(tmp_path)
    assert len(records) == len(CELLS) * 2 and all(r["status"] == "completed" for r in records)
    assert {d: i for d, i in ((r["dir"], r["id"]) for r in records) if d in finished} == finished
    assert (out / "report.md").is_file() and read_record(records[0]["dir"])["parent"]["kind"] == "study"
    check_finished_study(tmp_path, data_dir)


def test_help_and_the_study_package_do_not_import_torch():
    """`--help` stays fast, and the Hydra callback's module (rnnlab.study) leaves torch to the checks that
    need it."""
    probe = (
        "import runpy, sys\n"
        "sys.argv = ['study.py', '--help']\n"
        "try:\n"
        "    runpy.run_path('src/study.py', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "import rnnlab.study, rnnlab.study.plan, rnnlab.study.run\n"
        "print('HEAVY', sorted(m for m in ('torch', 'pytorch_lightning') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "HEAVY []" in result.stdout, result.stdout[-2000:] + result.stderr[-2000:]


def test_the_console_gives_a_confirm_runs_time_as_the_report_does():
    """The console's per-run time is the record's ``duration_s`` (the report's "time per run"), the command's
    wall time (with start-up) said apart."""
    from rnnlab.study.run import confirm_line

    record = {"duration_s": 12.34, "metrics": {"test/acc": 0.5, "val/acc_best": 0.6}}
    line = confirm_line("gru", 1, record, wall=19.6)
    assert line == "gru seed 1: test/acc=0.5000; run time 12.3 s (the report's time per run), 20 s with start-up"


def test_a_failed_child_is_one_line_naming_its_last_error_and_its_log(tmp_path):
    from rnnlab.study.run import Children, _failure

    log = tmp_path / "confirm.log"
    child = "print('[rnnlab] training gru'); print('error: data.path is not a file'); raise SystemExit(3)"
    code, tail = Children().run([sys.executable, "-c", child], log)
    failed = _failure("confirm run gru seed 1", code, tail, log)
    assert str(failed) == f"confirm run gru seed 1 failed (exit code 3): data.path is not a file; log: {log}"
    assert "error: data.path is not a file" in log.read_text()  # the child's whole output is in its log
    assert str(_failure("tuning gru", -9, [], log)) == f"tuning gru failed (exit code -9): no output; log: {log}"


def test_stopping_a_studys_children_interrupts_each_and_kills_one_that_ignores_it(tmp_path, monkeypatch):
    import threading

    from rnnlab.study import run as study_run

    monkeypatch.setattr(study_run, "STOP_TIMEOUT_S", 1)
    children = study_run.Children()
    deaf = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
    started = threading.Event()
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            children.run([sys.executable, "-c", deaf], tmp_path / "child.log", on_line=lambda line: started.set())
        except BaseException as error:  # what the study's thread gets
            outcome.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    assert started.wait(30)
    begun = time.monotonic()
    children.stop()  # SIGINT to its group, ignored; SIGKILL after STOP_TIMEOUT_S
    thread.join(30)
    assert time.monotonic() - begun < 20 and not children.running
    assert len(outcome) == 1 and isinstance(outcome[0], study_run.StudyInterrupted)
    with pytest.raises(study_run.StudyInterrupted):  # a stopped study starts no more children
        children.run([sys.executable, "-c", "pass"], tmp_path / "next.log")
