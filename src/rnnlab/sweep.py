"""Optuna sweep helpers of the sweeper (``hydra_plugins.rnnlab_sweeper``): storage, core shares, results.

Light on purpose (no torch, no Lightning): the sweep's parent process imports it, and with parallel
trials only the trial processes should pay for importing torch. The trial side is ``rnnlab.pruning``.
"""

from __future__ import annotations

import math
import os
import re
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf

if TYPE_CHECKING:
    import optuna

BEST_FILE = "best.yaml"  # written in the sweep directory after every sweep
SQLITE_LOCK_TIMEOUT_S = 60  # concurrent sweeps on one SQLite file wait for each other's writes
STORAGE_INIT_ATTEMPTS = 4


def open_storage(url: str, heartbeat_interval: int | None = None, grace_period: int | None = None):
    """An Optuna RDB storage for ``url``; a SQLite file's folder is created and writers wait for locks."""
    import optuna
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    engine_kwargs: dict[str, Any] = {}
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs["connect_args"] = {"timeout": SQLITE_LOCK_TIMEOUT_S}
    for attempt in range(1, STORAGE_INIT_ATTEMPTS + 1):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats: stable since 2.9
                return optuna.storages.RDBStorage(
                    url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval, grace_period=grace_period
                )
        except SQLAlchemyError:
            # Processes opening a new storage at once race to create its tables; the loser finds them next time.
            if attempt == STORAGE_INIT_ATTEMPTS:
                raise
            time.sleep(attempt)


def cpu_share(n_parallel_jobs: int) -> int:
    """torch threads for one of ``n_parallel_jobs`` trials running at once on this machine (at least 1)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // max(1, n_parallel_jobs))


# ------------------------------------------------------------------------------------------- results


def failure_reason(error: BaseException) -> str:
    """One line for the logs and the trial's ``error`` attribute."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def non_finite_reason(value: Any) -> str | None:
    """Why a job's return value cannot be an objective value, or None when it can."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return f"the job returned {value!r}, not a number"
    return None if math.isfinite(number) else f"the job returned {number} for the optimised metric"


def ranked_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Completed trials, best first."""
    import optuna

    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    return sorted(done, key=lambda t: t.value, reverse=maximize)


def top_trials_table(study: optuna.Study, top_k: int) -> str:
    """A plain-text table of the ``top_k`` best trials and the count of trials per state."""
    ranked = ranked_trials(study)[:top_k]
    param_names = sorted({name for trial in ranked for name in trial.params})
    header = ["trial", "value", *param_names]
    rows = [[str(t.number), f"{t.value:.4f}", *(_short(t.params.get(n)) for n in param_names)] for t in ranked]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in [header, *rows]]
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    states = ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))
    return "\n".join(
        [f"study {study.study_name!r}: {states}; top {len(ranked)} by {study.direction.name.lower()}:", *lines]
    )


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def override_value(value: Any) -> str:
    """A value as written on a Hydra command line (sampled params, the pruner's config, URLs, paths)."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{key}:{override_value(item)}" for key, item in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(override_value(item) for item in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if re.fullmatch(r"[\w.\-/]+", value):
        return value
    # quoted: keeps ':', '/', '@', '?', spaces verbatim
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def write_best(study: optuna.Study, sweep_dir: Path, base_overrides: Iterable[str], metric: str) -> Path | None:
    """``<sweep dir>/best.yaml``: the best trial's value, params, run dir, and the overrides to train it again.

    ``overrides`` are the sweep's own fixed overrides plus the best params, without the sweep's epoch budget:
    ``python src/train.py $(python -c "import yaml;print(*yaml.safe_load(open('best.yaml'))['overrides'])")``
    """
    ranked = ranked_trials(study)
    if not ranked:
        return None
    best = ranked[0]
    params = {name: best.params[name] for name in sorted(best.params)}
    overrides = [*base_overrides, *(f"{name}={override_value(value)}" for name, value in params.items())]
    content = {
        "study_name": study.study_name,
        "metric": metric,
        "direction": study.direction.name.lower(),
        "trial": best.number,
        "value": best.value,
        "params": params,
        "run_dir": best.user_attrs.get("run_dir"),
        "overrides": overrides,
        "command": "python src/train.py " + " ".join(overrides),
    }
    sweep_dir.mkdir(parents=True, exist_ok=True)
    path = sweep_dir / BEST_FILE
    path.write_text(OmegaConf.to_yaml(OmegaConf.create(content)))
    return path
