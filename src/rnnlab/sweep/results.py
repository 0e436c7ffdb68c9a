"""A study's results as the sweeper reports them: ranked trials, the table, ``best.yaml``, override syntax.

Light (no torch): the sweep's parent process imports it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf

if TYPE_CHECKING:
    import optuna

BEST_FILE = "best.yaml"  # written in the sweep directory after every sweep


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
