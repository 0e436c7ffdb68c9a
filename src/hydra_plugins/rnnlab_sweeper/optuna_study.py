"""The study a sweep works on: defaults for a plain Hydra app, what the study remembers, the folder it owns.

A study is created once with the fixed overrides of the command that started it (everything not searched
and not sweep machinery) and a random ``uid``; continuing it with other fixed overrides is refused, so every
trial of a study ran the same budget, task and model. Its sweep directory holds ``study.yaml`` naming that
``uid``: a different study (another storage, or one recreated under the same name) never writes into it and
takes the next free ``<dir>_<n>`` instead.
"""

from __future__ import annotations

import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from rnnlab.errors import CommandError

STUDY_ATTR = "rnnlab_sweep"  # the study's user attribute: {uid, fixed overrides, metrics}
STUDY_FILE = "study.yaml"  # in the sweep directory: which study owns it
DIRECTIONS = {"max": "maximize", "min": "minimize", "maximize": "maximize", "minimize": "minimize"}
# Overrides that say how or where trials run, not what they compute: a continued study may change them.
EXECUTION_PREFIXES = ("hydra.", "hydra/", "threads")
ATTR_WAIT_S = 5.0  # how long a second process waits for the creator of a new study to record its attributes


class StudyError(CommandError, ValueError):
    """A study that cannot be continued as asked (other fixed overrides, other directions); one line."""


def directions_of(direction: Any, config: DictConfig) -> list[str]:
    """Optuna's direction names from ``hydra.sweeper.direction`` (null: the app's optimized_mode, else minimize)."""
    if direction is None:
        direction = config.get("optimized_mode", "minimize") if OmegaConf.is_dict(config) else "minimize"
    given = list(direction) if OmegaConf.is_list(direction) or isinstance(direction, (list, tuple)) else [direction]
    named = [getattr(d, "name", d) for d in given]  # the published plugin's Direction enum too
    bad = [d for d in named if str(d).lower() not in DIRECTIONS]
    if bad or not named:
        raise StudyError(
            f"hydra.sweeper.direction={direction!r} is not allowed; allowed: maximize, minimize (max, min), or a "
            "list of them, one per objective (e.g. [maximize,minimize])"
        )
    return [DIRECTIONS[str(d).lower()] for d in named]


def metric_names(config: DictConfig, n_objectives: int) -> list[str]:
    """The names of the objectives: ``optimized_metric`` (a name or a list) where the app has it."""
    metric: Any = config.get("optimized_metric") if OmegaConf.is_dict(config) else None
    names = [str(m) for m in metric] if OmegaConf.is_list(metric) else ([str(metric)] if metric else [])
    if names and len(names) != n_objectives:
        raise StudyError(
            f"optimized_metric={names} and hydra.sweeper.direction name {len(names)} and {n_objectives} objectives; "
            "allowed: one direction per metric"
        )
    return names or (["objective"] if n_objectives == 1 else [f"objective_{i}" for i in range(n_objectives)])


def default_storage(config: DictConfig) -> str:
    """``sqlite:///<root>/multirun/optuna.db``: rnnlab's root (``paths.root_dir``) or where the command ran."""
    root = OmegaConf.select(config, "paths.root_dir", default=None) or OmegaConf.select(
        config, "hydra.runtime.cwd", default="."
    )
    return f"sqlite:///{Path(root).absolute()}/multirun/optuna.db"


def default_study_name(config: DictConfig) -> str:
    """``<data>-<cell>`` for rnnlab (e.g. mnist1d-lstm), else the app's job name (its script's name)."""
    data = OmegaConf.select(config, "hydra.runtime.choices.data", default=None)
    cell = OmegaConf.select(config, "model.cell", default=None, throw_on_resolution_failure=False)
    if data and cell:
        return f"{data}-{cell}"
    return str(OmegaConf.select(config, "hydra.job.name", default=None) or "study")


def fixed_settings(fixed: list[str]) -> dict[str, str]:
    """The fixed overrides that decide what a trial computes, as {key: value} (``+``/``++`` forms are one)."""
    settings = {}
    for line in fixed:
        key, _, value = line.partition("=")
        deleting = key.startswith("~")
        key = key.lstrip("+~")
        if not key.startswith(EXECUTION_PREFIXES):
            settings[key] = "~" if deleting else value
    return settings


def differences(started: dict[str, str], now: dict[str, str]) -> list[str]:
    shown = []
    for key in sorted(set(started) | set(now)):
        if started.get(key) != now.get(key):
            before = f"{key}={started[key]}" if key in started else f"no {key}"
            after = f"{key}={now[key]}" if key in now else "not given"
            shown.append(f"{before} (now {after.removeprefix(key + '=')})")
    return shown


def open_study(storage: Any, name: str, directions: list[str], fixed: dict[str, str], metrics: list[str], **kwargs):
    """(study, its record): create the study, or load it and check that it is the same experiment."""
    import optuna

    try:
        study = optuna.create_study(storage=storage, study_name=name, directions=directions, **kwargs)
        with warnings.catch_warnings():  # experimental in Optuna: names the objectives in optuna-dashboard's axes
            warnings.simplefilter("ignore")
            study.set_metric_names(list(metrics))
        record: dict[str, Any] = {"uid": uuid.uuid4().hex, "fixed": fixed, "metrics": metrics}
        study.set_user_attr(STUDY_ATTR, record)
        return study, record
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(storage=storage, study_name=name, **kwargs)
    stored = [d.name.lower() for d in study.directions]
    if stored != directions:
        raise StudyError(
            f"study {name!r} optimises {stored}, not hydra.sweeper.direction={directions}; give a new "
            "hydra.sweeper.study_name for other objectives"
        )
    deadline = time.monotonic() + ATTR_WAIT_S
    while (record := study.user_attrs.get(STUDY_ATTR)) is None and time.monotonic() < deadline:
        time.sleep(0.2)  # its creator records it right after creating it
    if record is None:  # a study started elsewhere (by hand, another sweeper, an older rnnlab): adopt it
        study.set_user_attr(STUDY_ATTR, {"uid": uuid.uuid4().hex, "fixed": fixed, "metrics": metrics})
        time.sleep(0.2)
        record = study.user_attrs[STUDY_ATTR]  # the last of several adopting processes wins, for all of them
    changed = differences(record.get("fixed", {}), fixed)
    if changed:
        raise StudyError(
            f"study {name!r} was started with other fixed overrides: {'; '.join(changed)}. Continue it with the "
            "same ones, or give a new hydra.sweeper.study_name to change them"
        )
    return study, record


def owned_sweep_dir(wanted: Path, study_name: str, storage: str, uid: str, trial_dirs: set[str]) -> Path:
    """The study's sweep directory: ``wanted`` unless another study owns it, then ``<wanted>_2``, ``_3``, ...

    A directory is this study's when its ``study.yaml`` names the study's uid, or (a study from before these
    files) when the study's trials ran in it; it is free when it holds nothing yet.
    """
    candidates = [wanted, *(wanted.with_name(f"{wanted.name}_{n}") for n in range(2, 1000))]
    for candidate in candidates:
        marker = candidate / STUDY_FILE
        if marker.is_file():
            try:
                owner = (yaml.safe_load(marker.read_text()) or {}).get("uid")
            except yaml.YAMLError:
                owner = None
            if owner == uid:
                return candidate
            continue
        if not candidate.exists() or not any(candidate.iterdir()) or str(candidate) in trial_dirs:
            return candidate
    raise StudyError(f"no free sweep directory beside {wanted}; give hydra.sweep.dir")


def claim(sweep_dir: Path, study_name: str, storage: str, uid: str) -> None:
    """Write ``study.yaml`` (once): this directory belongs to the study ``uid``."""
    marker = sweep_dir / STUDY_FILE
    if not marker.is_file():
        sweep_dir.mkdir(parents=True, exist_ok=True)
        marker.write_text(yaml.safe_dump({"study_name": study_name, "storage": storage, "uid": uid}, sort_keys=False))
