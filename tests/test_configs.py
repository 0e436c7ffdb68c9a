"""Every shipped config runs (issue 23): each file under conf/ is trained, swept, evaluated or generated from at a
tiny budget (``RNNLAB_BUDGET=tiny``), with the model summary and the progress bar on, as a user would run it.

The cases are derived from conf/ and the registries when the tests are collected, so a new config file is a new
case; ``test_every_config_file_is_run_or_excused`` fails for a file that no case runs and no reason excuses.
Each case checks what the run left: a completed ``run.json``, its metrics in the TensorBoard events, and the
checkpoints its callbacks promise. Most cases run in this process (``train`` on a composed config); the few that
need a process boundary (a ``-m`` multirun, a sweep, DDP's extra processes) run as commands, one at a time in
the background while the in-process cases run (``threads=1`` everywhere: one core each). ``-m configs`` selects
them all.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import warnings
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from helpers import CONF, ROOT, TINY, cli_env, compose_config, read_scalars
from rnnlab import budget
from rnnlab.cells import ENCODERS
from rnnlab.errors import ConfigError
from rnnlab.runs.store import RECORD_FILE, find_records

pytestmark = pytest.mark.configs

ONE_CORE = ["threads=1"]  # every case on one core: the in-process case and the background command share two
# Files under conf/ that no case here runs, with the reason.
NOT_RUN = {
    "hydra/launcher/slurm_gpu.yaml": "needs SLURM (hydra-submitit-launcher and a cluster)",
    "study.yaml": "src/study.py's config: tests/test_study.py runs it",
}
NEEDS_GPU = "needs a CUDA GPU"


def options(group: str) -> list[str]:
    """The options of a config group: conf/<group>/*.yaml."""
    return sorted(path.stem for path in (CONF / group).glob("*.yaml"))


def group_settings(group: str, option: str) -> DictConfig:
    """conf/<group>/<option>.yaml over the options of its group that its defaults list names, as Hydra merges
    them (read when collecting, before any composition)."""
    raw = OmegaConf.load(CONF / group / f"{option}.yaml")
    merged = OmegaConf.create()
    for entry in raw.pop("defaults", []):
        if isinstance(entry, str) and entry != "_self_":
            merged = OmegaConf.merge(merged, group_settings(group, entry))
    return OmegaConf.merge(merged, raw)


def is_multirun(group: str, option: str) -> bool:
    """A config that sweeps (its own ``hydra.sweeper.params``): run with ``-m``."""
    return OmegaConf.select(OmegaConf.load(CONF / group / f"{option}.yaml"), "hydra.sweeper.params") is not None


def needs_gpu(option: str) -> bool:
    """conf/trainer/<option>.yaml asks for a GPU (skipped without CUDA)."""
    return group_settings("trainer", option).get("accelerator") in ("gpu", "cuda")


def launches_processes(option: str) -> bool:
    """conf/trainer/<option>.yaml is DDP over several devices: Lightning re-runs the command for each further
    rank, so it runs as a command of its own."""
    settings = group_settings("trainer", option)
    return "ddp" in str(settings.get("strategy", "")) and settings.get("devices", 1) != 1


# ---------------------------------------------------------------------------------------------- the cases

DATA, CELLS, IMPLS = options("data"), options("model"), list(ENCODERS.names())
MATRIX = [(data, cell, impl) for data in DATA for cell in CELLS for impl in IMPLS]
# conf/train.yaml's choice per group (the shipped defaults: run once, by test_shipped_defaults_train).
DEFAULTS = {
    group: option
    for entry in OmegaConf.load(CONF / "train.yaml").defaults
    if isinstance(entry, DictConfig)
    for group, option in entry.items()
}
# One other shipped option per case, the rest of the config as shipped: (group as the command line names it, option).
OPTION_GROUPS = ("logger", "callbacks", "debug", "model/optimizer", "model/scheduler")
OPTIONS = [(group, option) for group in OPTION_GROUPS for option in options(group) if DEFAULTS.get(group) != option]
EXPERIMENTS = [option for option in options("experiment") if not is_multirun("experiment", option)]
TRAINERS = [x for x in options("trainer") if not launches_processes(x) and DEFAULTS["trainer"] != x]
# Commands (a process boundary): case id -> train.py arguments.
COMMANDS = {
    **{f"experiment={x}": ["-m", f"experiment={x}"] for x in options("experiment") if is_multirun("experiment", x)},
    **{f"hparams_search={x}": ["-m", f"hparams_search={x}"] for x in options("hparams_search")},
    **{f"trainer={x}": [f"trainer={x}"] for x in options("trainer") if launches_processes(x)},
}


def case_files() -> set[str]:
    """The conf/ files (relative paths) that the cases above select."""
    files = {"train.yaml", "eval.yaml", "generate.yaml"}
    files |= {f"data/{data}.yaml" for data in DATA} | {f"model/{cell}.yaml" for cell in CELLS}
    files |= {f"{group}/{option}.yaml" for group, option in OPTIONS}
    files |= {f"experiment/{option}.yaml" for option in options("experiment")}
    files |= {f"hparams_search/{option}.yaml" for option in options("hparams_search")}
    return files | {f"trainer/{option}.yaml" for option in options("trainer")}


def included(relative: str) -> Iterator[str]:
    """The conf/ files that the defaults list of conf/<relative> composes (where they exist under conf/)."""
    here = Path(relative).parent
    for entry in OmegaConf.to_container(OmegaConf.load(CONF / relative)).get("defaults", []):
        if isinstance(entry, str):
            group, option = "", entry
        else:
            ((group, option),) = entry.items()
        if option in (None, "_self_"):
            continue
        group = group.removeprefix("override ").split("@")[0]
        base = Path(group.lstrip("/")) if group.startswith("/") else here / group
        path = base / f"{option.split('@')[0]}.yaml"
        if (CONF / path).is_file():
            yield path.as_posix()


def covered_files() -> set[str]:
    """The case files and, transitively, every file their defaults lists compose."""
    covered, todo = set(), sorted(case_files())
    while todo:
        relative = todo.pop()
        if relative not in covered:
            covered.add(relative)
            todo.extend(included(relative))
    return covered


def test_every_config_file_is_run_or_excused():
    """A new file under conf/ is run by a case (derived from conf/ when collecting) or excused with a reason."""
    files = {path.relative_to(CONF).as_posix() for path in CONF.rglob("*.yaml")}
    covered = covered_files()
    assert files - covered - set(NOT_RUN) == set(), "config files no case runs: add a case or a NOT_RUN reason"
    assert set(NOT_RUN) <= files - covered, "NOT_RUN names a file that is gone or that a case runs"
    assert len(MATRIX) == len(DATA) * len(CELLS) * len(IMPLS) and {"builtin", "custom"} <= set(IMPLS)


# ------------------------------------------------------------------------------------- what a run leaves


def expected_checkpoints(cfg: DictConfig) -> dict[str, bool]:
    """Which of the record's checkpoints (best, last) the config's callbacks keep."""
    if cfg.trainer.get("fast_dev_run"):
        return {"best": False, "last": False}  # Lightning saves none in a fast_dev_run
    checkpoints = [
        c
        for c in (cfg.get("callbacks") or {}).values()
        if c and c.get("_target_", "").endswith("Checkpoint") and c.get("every_n_epochs") != 0  # 0: never saves
    ]
    if not checkpoints and cfg.trainer.get("enable_checkpointing", True):
        return {"best": False, "last": True}  # Lightning's own: the last epoch's weights, no metric
    return {"best": any(c.get("monitor") for c in checkpoints), "last": any(not c.get("monitor") for c in checkpoints)}


def check_record(run_dir: Path) -> dict[str, Any]:
    """A completed ``run.json`` of a run the tiny budget shrank (so its record says so); returns it."""
    record = json.loads((run_dir / RECORD_FILE).read_text())
    assert record["status"] == "completed", (record["status"], record.get("error"))
    assert record["env"] == {budget.ENV: "tiny"}
    return record


def check_scalars(events_dir: Path, cfg: DictConfig, metrics: dict[str, float]) -> None:
    """The run's metrics in its TensorBoard events: the training loss, the optimised metric, the test metrics,
    and the final value of each metric the run returned."""
    scalars = read_scalars(events_dir)
    names = list(cfg.optimized_metric) if OmegaConf.is_list(cfg.optimized_metric) else [cfg.optimized_metric]
    wanted = {"train/loss_epoch", "val/loss", *names, *(["test/loss"] if cfg.get("test", True) else [])}
    assert wanted - {"model/num_parameters"} <= set(scalars), sorted(scalars)
    for name, value in metrics.items():
        if name in scalars:
            assert scalars[name][-1][1] == pytest.approx(value, rel=1e-5, abs=1e-6), name
    assert all(math.isfinite(value) for _, value in scalars["train/loss_epoch"])


def check_run(run_dir: Path, cfg: DictConfig, metrics: dict[str, float], events_dir: Path | None = None) -> None:
    """What a finished training run leaves: a completed record with the returned metrics, the metrics in
    TensorBoard (none in a fast_dev_run: Lightning logs nothing there), the checkpoints its callbacks keep."""
    record = check_record(run_dir)
    assert cfg.optimized_metric in metrics and metrics.items() <= record["metrics"].items()
    if not cfg.trainer.get("fast_dev_run"):
        check_scalars(events_dir or run_dir, cfg, metrics)
    for which, kept in expected_checkpoints(cfg).items():
        path = record["checkpoints"][which]
        assert (path is not None and Path(path).is_file()) == kept, (which, path, sorted(run_dir.rglob("*.ckpt")))


# ---------------------------------------------------------------------------------- in-process training


def train_tiny(root: Path, data_dir: Path, overrides: list[str], name: str) -> tuple[Path, DictConfig, dict]:
    """Compose ``train`` with ``overrides`` and train under ``RNNLAB_BUDGET=tiny`` (applied by ``train`` after
    validation) into ``root/<name>``; returns the run directory, the config as trained and the metrics."""
    from rnnlab.app.train import train

    run_dir = root / name.replace("/", "_")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(budget.ENV, "tiny")
        patch.setenv("RNNLAB_ROOT", str(root))
        cfg = compose_config("train", [*overrides, *ONE_CORE], run_dir, data_dir)
        metrics = train(cfg)
    return run_dir, cfg, metrics


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("configs")


@pytest.fixture(scope="module")
def trained(root, data_dir):
    """trained(data, cell, impl) -> (run dir, config, metrics) of that matrix run, trained once per module (the
    eval and generate cases reuse the matrix's runs)."""
    runs: dict[tuple[str, str, str], tuple[Path, DictConfig, dict]] = {}

    def get(data: str, cell: str, impl: str):
        if (data, cell, impl) not in runs:
            overrides = [f"data={data}", f"model={cell}", f"model.impl={impl}", *TINY]
            runs[data, cell, impl] = train_tiny(root, data_dir, overrides, f"{data}-{cell}-{impl}")
        return runs[data, cell, impl]

    return get


@pytest.mark.parametrize(("data", "cell", "impl"), MATRIX, ids=["-".join(case) for case in MATRIX])
def test_data_model_impl_trains(trained, data, cell, impl):
    """Each conf/data × conf/model × model.impl (every registered encoder) trains, tests and checkpoints."""
    run_dir, cfg, metrics = trained(data, cell, impl)
    assert (cfg.model.cell, cfg.model.impl, cfg.trainer.enable_model_summary) == (cell, impl, True)
    check_run(run_dir, cfg, metrics)


def test_shipped_defaults_train(root, data_dir):
    """conf/train.yaml as shipped: its default data, model, optimizer, scheduler, trainer, logger, callbacks."""
    run_dir, cfg, metrics = train_tiny(root, data_dir, [], "defaults")
    assert (cfg.trainer.enable_model_summary, cfg.trainer.enable_progress_bar) == (True, True)
    check_run(run_dir, cfg, metrics)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_trains(root, data_dir, experiment):
    """Each single-run conf/experiment as shipped (epochs and sizes capped by the budget)."""
    run_dir, cfg, metrics = train_tiny(root, data_dir, [f"experiment={experiment}"], f"experiment={experiment}")
    check_run(run_dir, cfg, metrics)


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{group}={option}" for group, option in OPTIONS])
def test_option_trains(root, data_dir, group, option):
    """Each logger, callbacks, debug, optimizer and scheduler option with the shipped rest of the config."""
    run_dir, cfg, metrics = train_tiny(root, data_dir, [f"{group}={option}"], f"{group}={option}")
    check_run(run_dir, cfg, metrics)
    for logger in (cfg.get("logger") or {}).values():
        if logger._target_.endswith("CSVLogger"):
            assert "val/loss" in (run_dir / "metrics.csv").read_text().splitlines()[0]


class CrashAtEpoch(pl.Callback):
    """A crash at the start of ``epoch``, after the previous epoch's checkpoint."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("simulated crash")


def test_csv_logger_keeps_the_rows_of_a_resumed_run(root, data_dir):
    """logger=csv, resumed: metrics.csv keeps the epochs before the interruption (Lightning's CSV logger deleted
    the file it found, warning about any non-empty run directory)."""
    from rnnlab.app.resume import resume_config
    from rnnlab.app.train import train

    run_dir = root / "csv-resumed"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(budget.ENV, "tiny")
        cfg = compose_config("train", ["logger=csv", "trainer.max_epochs=2", *ONE_CORE], run_dir, data_dir)
        with pytest.raises(RuntimeError, match="simulated crash"):
            train(cfg, extra_callbacks=[CrashAtEpoch(1)])
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*will be deleted.*")
            train(resume_config(str(run_dir / "checkpoints" / "last.ckpt"), overrides=[]))
    with (run_dir / "metrics.csv").open(newline="") as file:
        validated = [row["epoch"] for row in csv.DictReader(file) if row.get("val/loss")]
    assert validated == ["0", "1"]


@pytest.mark.parametrize("trainer", TRAINERS)
def test_trainer_trains(root, data_dir, trainer):
    """Each conf/trainer this machine can run in one process (a GPU one is skipped without CUDA)."""
    if needs_gpu(trainer) and not torch.cuda.is_available():
        pytest.skip(NEEDS_GPU)
    run_dir, cfg, metrics = train_tiny(root, data_dir, [f"trainer={trainer}"], f"trainer={trainer}")
    check_run(run_dir, cfg, metrics)


# --------------------------------------------------------------------------------- eval and generate


def first_model() -> tuple[str, str]:
    return CELLS[0], IMPLS[0]


@pytest.mark.parametrize("data", DATA)
def test_eval_reproduces_the_test_metrics(trained, root, data_dir, data):
    """conf/eval.yaml: the best checkpoint of a trained run, tested again, gives the run's test metrics."""
    from rnnlab.app.evaluate import evaluate

    run_dir, cfg, metrics = trained(data, *first_model())
    best = check_record(run_dir)["checkpoints"]["best"]
    out = root / f"eval-{data}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(budget.ENV, "tiny")
        evaluated = evaluate(compose_config("eval", [f"ckpt_path={best}", *ONE_CORE], out, data_dir))
    tested = {name: value for name, value in metrics.items() if name.startswith("test/")}
    assert tested and evaluated == pytest.approx(tested, rel=1e-5)
    assert check_record(out)["metrics"] == pytest.approx(evaluated)
    assert tested.keys() <= read_scalars(out).keys()


@pytest.mark.parametrize("data", DATA)
def test_generate_from_a_trained_run(trained, root, data_dir, data):
    """conf/generate.yaml: a series or text continuation from a next-step run; any other task is refused in one
    line before anything is written."""
    from rnnlab.app.generate import generate_from_checkpoint

    run_dir, cfg, _ = trained(data, *first_model())
    out = root / f"generate-{data}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(budget.ENV, "tiny")
        gen_cfg = compose_config(
            "generate", [f"ckpt={run_dir / 'checkpoints' / 'last.ckpt'}", *ONE_CORE], out, data_dir
        )
        try:
            result = generate_from_checkpoint(gen_cfg)
        except ConfigError as error:  # conf/generate.yaml: sine and text runs generate
            assert not (data == "sine" or data.startswith("text")), error
            assert "cannot generate" in str(error) and "\n" not in str(error)
            assert not out.exists()
            return
    record = check_record(out)
    if isinstance(result, str):  # text: the prompt (lower-cased at word level) and its sampled continuation
        assert (
            result.lower().startswith(gen_cfg.prompt.strip().lower())
            and (out / "sample.txt").read_text(encoding="utf-8") == result
        )
    else:  # a series: the continuation and its error against the true one
        assert math.isfinite(result) and record["metrics"]["generate/mse"] == pytest.approx(result)
        assert (out / "generation.npz").is_file() and (out / "generation.png").is_file()


# ------------------------------------------------------------------------------------------ the commands


@pytest.fixture(scope="module", autouse=True)
def commands(request, root) -> Iterator[dict[str, Future]]:
    """The selected command cases, started when the module starts and run one at a time in the background (so
    they overlap the in-process cases): case id -> future of (completed process, its RNNLAB_ROOT)."""
    selected = [
        item.callspec.params["case"]
        for item in request.session.items
        if item.module.__name__ == __name__ and "case" in getattr(getattr(item, "callspec", None), "params", {})
    ]
    runnable = [case for case in selected if not (case.startswith("trainer=") and skipped_trainer(case))]
    pool = ThreadPoolExecutor(1)
    try:
        yield {case: pool.submit(run_command, root / case.replace("/", "_"), COMMANDS[case]) for case in runnable}
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # after a -x stop: only the running command is waited for


def run_command(command_root: Path, args: list[str]) -> tuple[subprocess.CompletedProcess, Path]:
    """``src/train.py args`` as a user runs it, under ``RNNLAB_BUDGET=tiny``, with logs under ``command_root``."""
    env = {**cli_env(command_root), budget.ENV: "tiny"}
    command = [sys.executable, str(ROOT / "src" / "train.py"), *args, *ONE_CORE]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600), command_root


def skipped_trainer(case: str) -> bool:
    return needs_gpu(case.removeprefix("trainer=")) and not torch.cuda.is_available()


def job_config(run_dir: Path) -> DictConfig:
    return OmegaConf.load(run_dir / "config.yaml")


@pytest.mark.parametrize("case", list(COMMANDS))
def test_command_runs(commands, case):
    """The configs that need a process boundary: each multirun experiment (every job and the report), each
    hparams_search (a 2-trial sweep: every trial, best.yaml), each multi-process trainer (DDP on CPU)."""
    if case.startswith("trainer=") and skipped_trainer(case):
        pytest.skip(NEEDS_GPU)
    done, command_root = commands[case].result()
    assert done.returncode == 0, done.stderr[-3000:]
    records = [record for record in find_records(command_root) if record["kind"] == "train"]
    assert records, done.stderr[-3000:]
    for record in records:
        run_dir = Path(record["dir"])
        cfg = job_config(run_dir)
        parent = record.get("parent") or {}
        events = run_dir
        if parent.get("kind") == "sweep":  # a trial's events go beside single runs (conf/hparams_search)
            events = command_root / "logs" / record["task"] / "sweeps" / parent["study"] / f"trial_{parent['trial']}"
        check_run(run_dir, cfg, {k: v for k, v in record["metrics"].items() if v is not None}, events)
    sweep_dir = Path(parent["dir"]) if parent.get("dir") else None
    if case.startswith("hparams_search="):
        n_trials = group_settings("hparams_search", case.partition("=")[2]).hydra.sweeper.n_trials
        assert len(records) == min(n_trials, budget.TINY_COUNTS["hydra.sweeper.n_trials"])
        assert (sweep_dir / "best.yaml").is_file()
    if case.startswith("experiment="):
        models = {record["params"].get("model.cell") for record in records}
        swept = str(OmegaConf.load(CONF / "experiment" / f"{case.partition('=')[2]}.yaml").hydra.sweeper.params.model)
        assert models == set(swept.split(",")), models
        assert (sweep_dir / "report.md").is_file()
