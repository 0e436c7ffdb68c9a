"""Reading what runs wrote: a run directory's config, TensorBoard scalars and gradient diagnostics."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from rnnlab.app.rundirs import RUN_CONFIG, load_run_config

PARAMS_TAG = "model/num_parameters"
EVENTS = "events.out.tfevents.*"


FLOOR = 1e-30  # gradient norms that underflowed to 0 still go on a log scale


class NoRunsError(RuntimeError):
    """The log directory holds no run directories."""


@dataclass
class Run:
    run_dir: Path
    config: dict[str, Any]
    scalars: dict[str, list[tuple[int, float]]]
    wall_time: float | None
    grad_by_step: dict[int, list[float]] = field(default_factory=dict)

    @property
    def model(self) -> dict[str, Any]:
        return self.config["model"]

    @property
    def task(self) -> str:
        return str(self.config.get("task_name", "?"))

    @property
    def group(self) -> str:
        """Runs of one setting (their seeds): cell, implementation, hidden size; a sweep trial is a setting of
        its own (its searched values differ beyond these), named by its study and trial number:
        ``gru-builtin-h8 (mnist1d-gru #3)``."""
        setting = f"{self.model['cell']}-{self.model['impl']}-h{self.model['hidden_size']}"
        trial = self.config.get("optuna_trial") or {}
        if trial.get("number") is None:
            return setting
        return f"{setting} ({trial.get('study_name', 'trial')} #{trial['number']})"

    @property
    def best_metric(self) -> str:
        return self.config.get("optimized_metric", "val/acc_best")

    @property
    def base_metric(self) -> str:
        """``acc`` for val/acc_best, ``mse`` for val/mse_best: the name the val/test curves share."""
        name = self.best_metric.split("/", 1)[-1]
        return name[: -len("_best")] if name.endswith("_best") else name

    def last(self, tag: str) -> float:
        points = self.scalars.get(tag)
        return points[-1][1] if points else math.nan

    @property
    def val_curve(self) -> list[float]:
        return [value for _, value in self.scalars.get(f"val/{self.base_metric}", [])]

    @property
    def params(self) -> int | None:
        value = self.last(PARAMS_TAG)
        return None if math.isnan(value) else int(round(value))

    @property
    def grad_ratio(self) -> float:
        """‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ at the last epoch with gradient diagnostics (nan without)."""
        if not self.grad_by_step:
            return math.nan
        norms = self.grad_by_step[max(self.grad_by_step)]
        return max(norms[0], FLOOR) / norms[-1] if norms[-1] > 0 else math.nan


def events_dir(run_dir: Path) -> Path:
    """Where a run's TensorBoard events are: beside its ``config.yaml``, or where its TensorBoard logger wrote
    them (a sweep trial's go beside single runs, ``logs/<task>/sweeps/<study>/trial_<n>``)."""
    if any(run_dir.glob(EVENTS)):
        return run_dir
    try:
        save_dir = OmegaConf.select(OmegaConf.load(run_dir / RUN_CONFIG), "logger.tensorboard.save_dir")
    except Exception:  # not a config this app wrote: no events of its own
        return run_dir
    return Path(save_dir) if isinstance(save_dir, str) and save_dir else run_dir


def find_tensorboard_runs(logdir: Path) -> list[Path]:
    """Directories holding a run's ``config.yaml`` whose TensorBoard events exist (``events_dir``), at any
    depth, sorted: a log directory, a sweep's (its trials), a study's or a compare's."""
    return sorted(
        config.parent for config in Path(logdir).rglob(RUN_CONFIG) if any(events_dir(config.parent).glob(EVENTS))
    )


def read_run(run_dir: Path) -> Run:
    """One run's config, every scalar (step, value), wall time and gradient diagnostics."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from rnnlab.callbacks.diagnostics import read_grad_by_step

    # A resumed run's events restart at its checkpoint's step by design (purge_step): TensorBoard's reader
    # warns about each such restart, and logs every file it opens; neither is news to the report's reader.
    logging.getLogger("tensorboard").setLevel(logging.ERROR)
    accumulator = EventAccumulator(str(events_dir(run_dir)), size_guidance={"scalars": 0, "images": 1, "tensors": 1})
    accumulator.Reload()
    scalars, walls = {}, []
    for tag in accumulator.Tags()["scalars"]:
        events = accumulator.Scalars(tag)
        scalars[tag] = [(e.step, e.value) for e in events]
        walls += [e.wall_time for e in events]
    wall_time = None
    if walls:
        # The first event of the first file read is not always the run's first: files of one second sort by a
        # counter compared as text ("...10" before "...9"), so the earliest scalar counts as well.
        try:
            first = min(min(walls), accumulator.FirstEventTimestamp())
        except ValueError:
            first = min(walls)
        wall_time = max(walls) - first
    config = OmegaConf.to_container(load_run_config(run_dir), resolve=False)
    return Run(run_dir, config, scalars, wall_time, read_grad_by_step(run_dir))
