"""The comparison: the compare_cells experiment (sweep, parameter matching) and the report, its numbers
checked against the TensorBoard event files of the runs it read (tbparse, an independent reader)."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from helpers import ROOT, TINY, compose_config, run_cli
from rnnlab.app.compare import count_parameters, hidden_for_params
from rnnlab.report import main as report_main
from rnnlab.report import write_report

# A tiny compare sweep: 2 cells x 2 seeds, 2 epochs of 3 batches each.
SWEEP = [
    "-m",
    "experiment=compare_cells",
    "compare.seeds=2",
    "hydra.sweeper.params.model='vanilla,lstm'",
    "compare.hidden_size=8",
    "trainer.max_epochs=2",
    *[o for o in TINY if not o.startswith(("model.hidden", "trainer.max"))],
]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, data_dir):
    """Runs ``train.py -m experiment=compare_cells`` once; returns (sweep dir, seconds it took, stdout)."""
    root = tmp_path_factory.mktemp("compare")
    start = time.time()
    result = run_cli("train.py", *SWEEP, f"paths.data_dir={data_dir}", root=root)
    elapsed = time.time() - start
    assert result.returncode == 0, result.stderr[-3000:]
    sweep_dirs = list((root / "multirun" / "compare" / "mnist1d").iterdir())
    assert len(sweep_dirs) == 1, sweep_dirs
    return sweep_dirs[0], elapsed, result.stdout


def table_rows(markdown: str) -> dict[str, list[str]]:
    """The summary table of report.md: group -> its cells."""
    rows = {}
    for line in markdown.split("## Runs")[0].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 9 and cells[0] == "mnist1d":
            rows[cells[1]] = cells
    return rows


def mean_std(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values, ddof=1))


def parse_pm(cell: str) -> tuple[float, float]:
    """``test/acc 16.20% ± 1.41`` -> (0.162, 0.0141): accuracies are written in percent and points."""
    mean, percent, std = re.search(r"([0-9.]+)(%?) ± ([0-9.]+)", cell).groups()
    scale = 100 if percent else 1
    return float(mean) / scale, float(std) / scale


@pytest.mark.slow
def test_sweep_writes_the_report_when_it_ends(sweep):
    sweep_dir, _, stdout = sweep
    runs = sorted(p for p in sweep_dir.iterdir() if p.name.isdigit())
    assert len(runs) == 4 and all((r / "config.yaml").is_file() for r in runs)
    cells_seeds = sorted(
        (OmegaConf.load(r / "config.yaml").model.cell, OmegaConf.load(r / "config.yaml").seed) for r in runs
    )
    assert cells_seeds == [("lstm", 0), ("lstm", 1), ("vanilla", 0), ("vanilla", 1)]
    assert (sweep_dir / "report.md").is_file() and (sweep_dir / "report.png").is_file()
    assert "[rnnlab] report:" in stdout and "| mnist1d | vanilla-builtin-h8 | 0,1 |" in stdout


@pytest.mark.slow
def test_report_numbers_are_those_of_the_event_files(sweep, tmp_path):
    from tbparse import SummaryReader

    sweep_dir, elapsed, _ = sweep
    groups = write_report(sweep_dir, tmp_path, tensorboard=False)
    rows = table_rows((tmp_path / "report.md").read_text())
    assert list(rows) == ["vanilla-builtin-h8", "lstm-builtin-h8"] == [g.name for g in groups]

    for name, cells in rows.items():
        run_dirs = [
            r
            for r in sorted(sweep_dir.iterdir())
            if r.name.isdigit() and OmegaConf.load(r / "config.yaml").model.cell == name.split("-")[0]
        ]
        assert len(run_dirs) == 2
        test_acc, best_val, walls, params = [], [], [], set()
        for run_dir in run_dirs:
            frame = SummaryReader(str(run_dir), extra_columns={"wall_time"}).scalars
            test_acc.append(frame[frame.tag == "test/acc"].value.iloc[-1])
            best_val.append(frame[frame.tag == "val/acc_best"].value.iloc[-1])
            assert len(frame[frame.tag == "val/acc"]) == 2  # epochs
            cfg = OmegaConf.load(run_dir / "config.yaml")
            params.add(instantiate(cfg.model, task=instantiate(cfg.data).task).num_parameters)
            walls.append(frame.wall_time.max() - frame.wall_time.min())
        assert test_acc[0] != test_acc[1] or best_val[0] != best_val[1]  # the seeds differ

        assert parse_pm(cells[5]) == pytest.approx(mean_std(test_acc), abs=6e-5)  # 2 decimals of a percent
        assert parse_pm(cells[4]) == pytest.approx(mean_std(best_val), abs=6e-5)
        assert cells[5].startswith("test/acc ") and cells[4].startswith("val/acc_best ")
        assert cells[2] == "0,1" and cells[3] == f"{params.pop():,}" and cells[6] == "2"
        # wall time: first to last event of a run, at least its scalars' span, at most the whole sweep
        assert min(walls) - 0.1 <= float(cells[7]) <= elapsed
        assert 0 < float(cells[8]) < 1  # the gradient reaching h_1 is smaller than at h_T


@pytest.mark.slow
def test_report_figure_and_tensorboard_run(sweep, tmp_path):
    from matplotlib.image import imread
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sweep_dir, _, _ = sweep
    write_report(sweep_dir, tmp_path)
    height, width, _ = imread(tmp_path / "report.png").shape
    assert width > 2.5 * height  # three panels side by side: curves, bars, gradient by step
    accumulator = EventAccumulator(str(tmp_path / "report"), size_guidance={"images": 0, "tensors": 0})
    accumulator.Reload()
    assert accumulator.Tags()["images"] == ["report"]
    text = accumulator.Tensors("report/text_summary")[0].tensor_proto.string_val[0].decode()
    assert text == (tmp_path / "report.md").read_text()
    write_report(sweep_dir, tmp_path)  # again: the report run is replaced, not duplicated
    assert len(list((tmp_path / "report").glob("events.out.tfevents.*"))) == 1


@pytest.mark.slow
def test_report_command_on_a_parent_dir(sweep, tmp_path, capsys):
    sweep_dir, _, _ = sweep
    assert report_main([str(sweep_dir.parent.parent), "--out", str(tmp_path / "out"), "--no-tensorboard"]) == 0
    assert "4 runs in 2 groups" in (tmp_path / "out" / "report.md").read_text()
    assert "| mnist1d | lstm-builtin-h8 | 0,1 |" in capsys.readouterr().out
    assert not (tmp_path / "out" / "report").exists()


@pytest.mark.slow
def test_report_of_an_optuna_sweeps_dir_reads_its_trials(tmp_path, data_dir, capsys):
    """A sweep trial's events go beside single runs (logs/<task>/sweeps/...): the report of the sweep's dir
    finds them through each trial's config, one group per trial, its numbers those the trial recorded."""
    import json

    done = run_cli(
        "train.py", "-m", "hparams_search=optuna", "model=gru", "hydra.sweeper.n_trials=2",
        "hydra.sweeper.study_name=rep", *TINY, f"paths.data_dir={data_dir}", root=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    sweep_dir = tmp_path / "multirun" / "mnist1d" / "rep"
    assert report_main([str(sweep_dir), "--out", str(tmp_path / "out"), "--no-tensorboard"]) == 0
    text = (tmp_path / "out" / "report.md").read_text()
    assert "2 runs in 2 groups" in text, text
    for number in (0, 1):
        best = json.loads((sweep_dir / f"trial_{number}" / "run.json").read_text())["metrics"]["val/acc_best"]
        row = next(line for line in text.splitlines() if f"gru-builtin-h8 (rep #{number}) |" in line)
        assert f"val/acc_best {100 * best:.2f}%" in row, row
    assert "error" not in capsys.readouterr().err


def test_report_says_when_there_are_no_runs(tmp_path, capsys):
    (tmp_path / "logs" / "mnist1d").mkdir(parents=True)
    (tmp_path / "logs" / "mnist1d" / "config.yaml").write_text("model: {}\n")  # no events: not a run
    assert report_main([str(tmp_path / "logs")]) == 1
    assert f"error: no runs found under {tmp_path / 'logs'}" in capsys.readouterr().err
    assert not (tmp_path / "logs" / "report.md").exists()


# ------------------------------------------------------------------------------------------- the experiment


def compare_cfg(tmp_path, data_dir, *overrides: str):
    return compose_config("train", ["experiment=compare_cells", *overrides], tmp_path, data_dir)


def test_compare_experiment_defaults(tmp_path, data_dir):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    cfg = compare_cfg(tmp_path, data_dir)
    assert (cfg.compare.seeds, cfg.compare.match, cfg.model.hidden_size) == (3, "hidden", 64)
    assert cfg.model.readout == "last" and cfg.trainer.max_epochs == 20
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        hydra_cfg = compose("train", overrides=["experiment=compare_cells"], return_hydra_config=True).hydra
    assert dict(hydra_cfg.sweeper.params) == {"model": "vanilla,gru,lstm", "seed": "range(3)"}
    assert hydra_cfg.callbacks.compare_report._target_ == "rnnlab.report.CompareReport"


def test_parameter_matching_picks_the_closest_hidden_size(tmp_path, data_dir):
    target = 6000
    sizes = {}
    for cell in ("vanilla", "gru", "lstm"):
        cfg = compare_cfg(
            tmp_path, data_dir, f"model={cell}", "compare.match=params", f"compare.target_params={target}"
        )
        hidden = cfg.model.hidden_size
        task = instantiate(cfg.data).task
        kwargs = {k: cfg.model[k] for k in ("cell", "impl", "num_layers", "dropout", "bidirectional", "readout")}
        count = count_parameters(task, kwargs, hidden)
        assert count == instantiate(cfg.model, task=task).num_parameters
        for other in (hidden - 1, hidden + 1):
            assert abs(count - target) <= abs(count_parameters(task, kwargs, other) - target)
        sizes[cell] = hidden
    assert sizes["vanilla"] > sizes["gru"] > sizes["lstm"]


def test_hidden_for_params_search():
    assert hidden_for_params(lambda h: h * h, 50) == 7  # 49 is closer than 64
    assert hidden_for_params(lambda h: 10 * h, 3) == 1
    assert hidden_for_params(lambda h: h, 10**9, max_hidden=64) == 64
    with pytest.raises(ValueError):
        hidden_for_params(lambda h: h, 0)


def test_bad_match_is_named(tmp_path, data_dir):
    cfg = compare_cfg(tmp_path, data_dir, "compare.match=flops")
    with pytest.raises(Exception, match=r"compare.match='flops' is not allowed; allowed: hidden, params"):
        _ = cfg.model.hidden_size
