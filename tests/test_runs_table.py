"""Comparing runs at a glance: the curated settings (rnnlab.runs.settings), the `rnnlab runs` table over a
mix of runs (train, sweep trials, a study's and a compare's runs, eval, generate), names/tags/notes given at
launch, and TensorBoard's HPARAMS table opening on the varied settings."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from helpers import TINY, cli_env, compose_config, interrupt_at, read_hparams, run_cli
from rnnlab.app.session import run_derived, run_settings, start_record
from rnnlab.cli import main
from rnnlab.runs.columns import number_format, parent_of
from rnnlab.runs.settings import KEY_SETTINGS
from rnnlab.runs.store import read_record

WIDTH = 120
MAIN_METRICS = ("val/acc_best", "test/acc", "model/num_parameters")
INTERNAL = ("_target_", "_partial_", "default_root_dir", "data_dir", "run_name", "shuffle_seed", "max_lr", "paths.")


def cli(*args: str, root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rnnlab.runs", *args], cwd=root, env=cli_env(root), capture_output=True, text=True
    )


# ------------------------------------------------------------------------------------------- settings


def test_the_curated_settings_leave_out_plumbing_paths_and_copies_and_put_the_key_ones_first(tmp_path, data_dir):
    cfg = compose_config("train", ["model=gru"], tmp_path / "run", data_dir)
    shown = run_settings(cfg)
    assert list(shown)[: len(KEY_SETTINGS)] == list(KEY_SETTINGS)
    assert not [key for key in shown if any(word in key for word in INTERNAL)], list(shown)
    assert not [value for value in shown.values() if isinstance(value, str) and value.startswith("/")]
    # Copies are found from the config's interpolations, not from a list of names.
    assert {"data.shuffle_seed", "model.scheduler.max_lr", "run_name"} <= set(run_derived(cfg))
    assert {"data.batch_size", "model.num_layers", "trainer.max_epochs", "task_name"} <= set(shown)
    # Set by hand, a copy is a setting of its own again.
    own = compose_config("train", ["model=gru", "data.shuffle_seed=7"], tmp_path / "run2", data_dir)
    assert run_settings(own)["data.shuffle_seed"] == 7


def test_one_number_format_per_column():
    fmt = number_format([6714.0, 38470.0, None])
    assert [fmt(v) for v in (6714.0, 38470.0, None)] == ["6714", "38470", "-"]
    fmt = number_format([0.95, 0.1234567, 0.5])
    assert [fmt(v) for v in (0.95, 0.1234567)] == ["0.9500", "0.1235"]
    fmt = number_format([1e-3, 3e-4])
    assert [fmt(v) for v in (1e-3, 3e-4)] == ["1.00e-03", "3.00e-04"]
    assert number_format(["gru", 1]) is None


# ------------------------------------------------------------------------------------------- the table

TRAIN_METRICS = {"val/acc": 0.41, "val/acc_best": 0.43, "val/loss": 1.62, "test/acc": 0.42, "test/loss": 1.6}


def make_record(root, data_dir, rel: str, overrides, kind="train", metrics=None, status="completed", of_run=None):
    config = {"train": "train", "eval": "eval", "generate": "generate"}[kind]
    run_dir = root / rel
    cfg = compose_config(config, overrides, run_dir, data_dir)
    record = start_record(cfg, run_dir, kind, of_run=of_run)
    record.finish(status, metrics=metrics or {})
    time.sleep(0.002)  # distinct start times
    return cfg


@pytest.fixture(scope="module")
def mixed_runs(tmp_path_factory, data_dir) -> Path:
    """15 run records as the commands leave them (composed from conf/, written by start_record; no training):
    3 single runs, a 4-trial sweep, a study's 2 confirm runs, a compare's 2 runs, a sine run, an eval, a
    generate, and an interrupted run named, tagged and noted at launch."""
    root = tmp_path_factory.mktemp("mixed")
    cfgs = {}
    for cell, params in (("gru", 9348.0), ("lstm", 12420.0), ("vanilla", 3300.0)):
        cfgs[cell] = make_record(
            root,
            data_dir,
            f"logs/mnist1d/{cell}-builtin-h64/seed42/version_0",
            [f"model={cell}", "model.hidden_size=64"],
            metrics={**TRAIN_METRICS, "model/num_parameters": params},
        )
    sweep = root / "multirun/mnist1d/mnist1d-gru"
    for trial, (hidden, lr) in enumerate([(32, 0.003), (128, 0.01), (256, 0.001), (64, 0.02)]):
        parent = f"+parent={{kind:sweep,dir:'{sweep}',study:mnist1d-gru,trial:{trial}}}"
        make_record(
            root,
            data_dir,
            f"multirun/mnist1d/mnist1d-gru/trial_{trial}",
            ["model=gru", f"model.hidden_size={hidden}", f"model.optimizer.lr={lr}", "test=false", parent],
            metrics={"val/acc_best": 0.3 + trial / 10, "model/num_parameters": float(hidden * hidden * 3 + 6714)},
        )
    study = root / "multirun/study/mnist1d/tiny"
    for seed in (0, 1):
        make_record(
            root,
            data_dir,
            f"multirun/study/mnist1d/tiny/confirm/gru-1a2b3c4d/seed{seed}",
            ["model=gru", f"seed={seed}", f"+parent={{kind:study,dir:'{study}',study:tiny}}"],
            metrics={**TRAIN_METRICS, "model/num_parameters": 38470.0},
        )
    for job, cell in enumerate(("vanilla", "lstm")):  # a compare's jobs: their parent from where they live
        make_record(
            root,
            data_dir,
            f"multirun/compare/mnist1d/2026-12-06_04-00-00/{job}",
            [f"model={cell}", "seed=0"],
            metrics=TRAIN_METRICS,
        )
    cfgs["sine"] = make_record(
        root,
        data_dir,
        "logs/sine/lstm-builtin-h64/seed42/version_0",
        ["data=sine", "model=lstm"],
        metrics={"val/mse": 0.0012, "val/mse_best": 0.00087, "test/mse": 0.00091},
    )
    gru_dir = root / "logs/mnist1d/gru-builtin-h64/seed42/version_0"
    make_record(
        root,
        data_dir,
        "logs/mnist1d/gru-builtin-h64/seed42/version_0/eval/version_0",
        [f"ckpt_path={gru_dir}/checkpoints/last.ckpt", "tags=[a]"],
        kind="eval",
        metrics={"test/acc": 0.42, "test/loss": 1.6},
        of_run=cfgs["gru"],
    )
    sine_dir = root / "logs/sine/lstm-builtin-h64/seed42/version_0"
    make_record(
        root,
        data_dir,
        "logs/sine/lstm-builtin-h64/seed42/version_0/generate/version_0",
        [f"ckpt={sine_dir}/checkpoints/last.ckpt"],
        kind="generate",
        of_run=cfgs["sine"],
    )
    make_record(
        root,
        data_dir,
        "logs/mnist1d/x/seed42/version_0",
        ["model=gru", "run_name=x", "tags=[a,b]", "note='first try'"],
        status="interrupted",
        metrics={"val/acc_best": 0.2},
    )
    return root


def listing(root: Path, *args: str) -> list[str]:
    out = io.StringIO()
    with redirect_stdout(out):  # piped: plain text, 120 columns
        assert main(["runs", "--limit", "0", *args]) == 0
    return out.getvalue().splitlines()


def test_the_default_listing_of_15_mixed_runs_fits_120_columns_with_varied_settings_then_key_metrics(
    mixed_runs, monkeypatch
):
    monkeypatch.setenv("RNNLAB_ROOT", str(mixed_runs))
    lines = listing(mixed_runs)
    print("\n".join(lines))
    header, *rows = lines
    assert len(rows) == 16 and max(len(line) for line in lines) <= WIDTH  # 15 runs and the caption
    names = header.split()
    assert names[:4] == ["id", "name", "status", "parent"]
    # The key settings that vary, in order, then the optimised metric; the name and parent elided to make room.
    assert names[4:8] == ["cell", "hidden_size", "lr", "val/acc_best"]
    assert not [name for name in names if any(word in name for word in INTERNAL)]
    assert re.fullmatch(r"\d+ more columns: --wide shows all, --columns chooses", rows[-1])
    assert any("compare 2026…-06_04-00-00" in row for row in rows)
    trial = next(row for row in rows if "#2" in row)
    assert "sweep mnist1d-gru #2" in trial and "0.5000" in trial  # one format per column: 0.5 -> 0.5000
    assert any("study tiny" in row for row in rows)
    wide = listing(mixed_runs, "--wide")
    assert max(len(line) for line in wide) > WIDTH and "num_parameters" in wide[0] and "task_name" in wide[0]
    assert {"9348", "38470", "12420"} <= set(" ".join(wide).split())  # never 3.847e+04 beside 9348


def test_group_parent_puts_each_sweep_study_and_compare_together(mixed_runs, monkeypatch):
    monkeypatch.setenv("RNNLAB_ROOT", str(mixed_runs))
    lines = listing(mixed_runs, "--group", "parent", "--columns", "name,parent,val/acc_best")
    assert lines[0].split() == ["name", "parent", "val/acc_best"]
    heads = [line for line in lines[1:] if line.endswith(("run", "runs"))]
    assert heads == [
        "(no parent): 7 runs",
        "compare 2026-12-06_04-00-00: 2 runs",
        "study tiny: 2 runs",
        "sweep mnist1d-gru: 4 runs",
    ]
    sweep = lines.index("sweep mnist1d-gru: 4 runs")
    assert [line.split()[-3] for line in lines[sweep + 1 : sweep + 5]] == ["mnist1d-gru"] * 4
    assert sorted(line.split()[-2] for line in lines[sweep + 1 : sweep + 5]) == ["#0", "#1", "#2", "#3"]


def test_columns_chooses_and_an_unknown_column_is_one_error_line(mixed_runs):
    done = cli("--columns", "name,lr,test/acc,tags", root=mixed_runs)
    assert done.returncode == 0 and done.stdout.splitlines()[0].split() == ["name", "lr", "test/acc", "tags"]
    import torch

    done = cli("--columns", "name,versions.torch", root=mixed_runs)  # any value --where can name
    assert done.returncode == 0 and done.stdout.splitlines()[0].split() == ["name", "versions.torch"]
    assert {line.split()[-1] for line in done.stdout.splitlines()[1:]} == {torch.__version__}
    done = cli("--columns", "name,nope", root=mixed_runs)
    assert done.returncode == 2 and done.stdout == "" and len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith("error: --columns 'nope' is not a column of these runs; allowed: id, name")


def test_names_tags_and_notes_given_at_launch_are_stored_shown_and_filtered(mixed_runs, monkeypatch):
    monkeypatch.setenv("RNNLAB_ROOT", str(mixed_runs))
    record = read_record(mixed_runs / "logs/mnist1d/x/seed42/version_0")
    assert (record["name"], record["tags"], record["note"]) == ("x", ["a", "b"], "first try")
    assert "tags" not in record["params"] and "note" not in record["params"]
    found = json.loads(cli("--json", "--where", "tags=a", root=mixed_runs).stdout)
    assert sorted(r["name"] for r in found) == ["gru-builtin-h64-eval", "x"]  # eval takes tags too
    assert [r["name"] for r in json.loads(cli("--json", "--where", "tags=b and name=x", root=mixed_runs).stdout)] == [
        "x"
    ]
    row = next(line for line in listing(mixed_runs, "--columns", "name,tags,note") if line.startswith("x "))
    assert row.split() == ["x", "a,b", "first", "try"]


def test_diff_shows_only_real_differences(mixed_runs):
    trials = sorted((mixed_runs / "multirun/mnist1d/mnist1d-gru").glob("trial_*"))
    done = cli("diff", str(trials[0]), str(trials[1]), root=mixed_runs)
    assert done.returncode == 0, done.stderr
    settings = done.stdout.split("settings", 1)[1].split("metrics", 1)[0]
    assert [line.split()[0] for line in settings.strip().splitlines()] == ["model.hidden_size", "model.optimizer.lr"]


def test_parent_of_a_run_found_by_where_it_lives():
    assert parent_of({"dir": "/r/multirun/mnist1d/mnist1d-gru/trial_3"}) == (
        "sweep mnist1d-gru",
        "sweep mnist1d-gru #3",
    )
    assert parent_of({"dir": "/r/multirun/study/mnist1d/tiny/confirm/gru-1/seed0"})[0] == "study tiny"
    assert parent_of({"dir": "/r/multirun/compare/sine/2026-01-01_00-00-00/1"})[0] == "compare 2026-01-01_00-00-00"
    assert parent_of({"dir": "/r/logs/mnist1d/gru-builtin-h8/seed1/version_0"}) == ("", "")


# ------------------------------------------------------------------------------------------- TensorBoard


@pytest.fixture(scope="module")
def hparams_logs(tmp_path_factory, data_dir) -> Path:
    """Real runs: three tiny single runs (one per cell) trained in this process and a 4-trial sweep run as a
    user would (src/train.py -m), all writing TensorBoard events under one logs/."""
    from rnnlab.app.train import train

    root = tmp_path_factory.mktemp("hparams")
    for cell in ("vanilla", "gru", "lstm"):  # hidden size 12, the trials' 8: it varies whatever the sampler picks
        run_dir = root / "logs" / "mnist1d" / f"{cell}-builtin-h12" / "seed42" / "version_0"
        train(compose_config("train", [*TINY, f"model={cell}", "model.hidden_size=12"], run_dir, data_dir))
    done = run_cli(
        "train.py",
        "-m",
        "hparams_search=optuna",
        "model=gru",
        "hydra.sweeper.n_trials=4",
        *TINY,
        f"paths.data_dir={data_dir}",
        "tags=[sweep1]",
        root=root,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # one more gru run, Ctrl-C'ed after its first epoch's checkpoints: a run that did not complete
    pause = ["+callbacks.pause._target_=pausing.PauseAt", f"paths.data_dir={data_dir}"]
    stopped = interrupt_at([*TINY, "model=gru", "model.hidden_size=12", *pause], root, "checkpoint:0")
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    return root


def tensorboard_experiment(logdir: Path, runs: int) -> tuple[dict, list[dict]]:
    """``/data/plugin/hparams/experiment`` (5 hparams, as the dashboard asks) and the session groups, from
    TensorBoard's own hparams plugin over ``logdir`` once it serves ``runs`` runs."""
    from test_tensorboard_server import free_port, get

    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("tensorboard")), "--logdir", str(logdir), "--port", str(port)]
        + ["--host", "127.0.0.1", "--load_fast=false"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                if len(get(base, "/data/runs")) >= runs:
                    break
            except OSError:
                pass
            assert time.time() < deadline and server.poll() is None, "tensorboard did not serve the runs"
            time.sleep(0.5)
        experiment = get(base, "/data/plugin/hparams/experiment", {"experimentName": "", "hparamsLimit": 5})
        request = {"experimentName": "", "startIndex": 0, "sliceSize": 100, "colParams": []}
        request["allowedStatuses"] = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]
        groups = get(base, "/data/plugin/hparams/session_groups", request)["sessionGroups"]
    finally:
        server.terminate()
        server.wait(timeout=20)
    return experiment, groups


@pytest.mark.slow
def test_tensorboard_hparams_open_on_the_varied_settings_then_the_main_metrics(hparams_logs):
    from rnnlab.runs.columns import varying_settings
    from rnnlab.runs.store import find_records

    records = [r for r in find_records(hparams_logs) if r["kind"] == "train"]
    assert len(records) == 8
    varied, _ = varying_settings(records)
    # each run: its own TensorBoard run and its HPARAMS session's (rnnlab.app.hparams)
    experiment, groups = tensorboard_experiment(hparams_logs / "logs", runs=2 * len(records))
    shown = experiment["hparamInfos"]  # the 5 columns the dashboard ticks, in its order
    assert set(varied) == {"model.cell", "model.hidden_size", "model.optimizer.lr"}  # not the sweep's plumbing
    assert [(info["name"], info.get("differs", False)) for info in shown[:3]] == [
        ("model.cell", True),
        ("model.hidden_size", True),
        ("model.optimizer.lr", True),
    ]
    assert len(shown) == 5 and not any(info.get("differs") for info in shown[3:]), shown
    # the metric columns the dashboard ticks (its first 5): the task's main metrics, no epoch or grad_norm
    ticked = [info["name"]["tag"] for info in experiment["metricInfos"][:5]]
    assert {"val/acc_best", "test/acc"} <= set(ticked) <= {*MAIN_METRICS, "run/completed"}, ticked
    # every trial and run told apart by its "Trial ID": a trial by its study and number
    names = [group["name"] for group in groups]
    assert len(names) == len(set(names)) == 8, names
    assert sorted(n.rsplit(" ", 1)[0] for n in names if "#" in n) == [f"mnist1d-gru #{k}" for k in range(4)]
    # the run that did not complete: its status, and 0 in the run/completed column (1 for the others)
    status = {group["name"]: group["sessions"][0].get("status") for group in groups}
    completed = {
        group["name"]: next(v["value"] for v in group["metricValues"] if v["name"]["tag"] == "run/completed")
        for group in groups
    }
    unfinished = [name for name, value in completed.items() if value == 0]
    assert len(unfinished) == 1 and status[unfinished[0]] == "STATUS_FAILURE", (completed, status)
    assert [value for value in completed.values()].count(1) == 7
    hparams, _ = read_hparams(next((hparams_logs / "logs").rglob("trial_2")))
    assert hparams["tags"] == "sweep1" and not [k for k in hparams if any(w in k for w in INTERNAL)]


@pytest.mark.slow
def test_a_run_named_and_tagged_at_launch_is_found_by_its_tags(tmp_path, data_dir):
    done = run_cli(
        "train.py", "run_name=x", "tags=[a,b]", "note=baseline", f"paths.data_dir={data_dir}", *TINY, root=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(cli("--json", "--where", "tags=a", root=tmp_path).stdout)
    assert [(r["name"], r["tags"], r["note"]) for r in found] == [("x", ["a", "b"], "baseline")]
    hparams, _ = read_hparams(Path(found[0]["dir"]))
    assert hparams["tags"] == "a,b" and hparams["note"] == "baseline" and hparams["model.cell"] == "lstm"
