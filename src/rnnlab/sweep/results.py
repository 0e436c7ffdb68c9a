"""A study's results as the sweeper reports them: ranked trials or the Pareto front, the table, ``best.yaml``,
``optimization_results.yaml`` (the published hydra-optuna-sweeper's file), the Pareto plot, override syntax.

Light (no torch): the sweep's parent process imports it (matplotlib only for the plot of a multi-objective study).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from omegaconf import OmegaConf

if TYPE_CHECKING:
    import optuna

BEST_FILE = "best.yaml"  # written in the sweep directory after every sweep
RESULTS_FILE = "optimization_results.yaml"  # the published plugin's summary, same place
PARETO_PLOT = "pareto.png"  # a two-objective study's trials and front


def ranked_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Completed trials, best first (one objective), or the Pareto front by the first objective (several)."""
    import optuna

    if len(study.directions) > 1:
        front = study.best_trials
        first_max = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
        return sorted(front, key=lambda t: (t.values[0], -t.number), reverse=first_max)
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    return sorted(done, key=lambda t: t.value, reverse=maximize)


def top_trials_table(study: optuna.Study, top_k: int, metrics: list[str] | None = None) -> str:
    """A plain-text table of the ``top_k`` best trials (the whole Pareto front for several objectives) and the
    count of trials per state."""
    several = len(study.directions) > 1
    ranked = ranked_trials(study) if several else ranked_trials(study)[:top_k]
    names = metrics if metrics and len(metrics) == len(study.directions) else None
    value_names = names or (["value"] if not several else [f"value_{i}" for i in range(len(study.directions))])
    param_names = sorted({name for trial in ranked for name in trial.params})
    header = ["trial", *value_names, *param_names]
    rows = [
        [str(t.number), *(f"{v:.4g}" for v in t.values), *(param_text(t.params.get(n)) for n in param_names)]
        for t in ranked
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in [header, *rows]]
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    states = ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))
    directions = "/".join(d.name.lower() for d in study.directions)
    title = f"Pareto front of {len(ranked)} trials" if several else f"top {len(ranked)} by {directions}"
    return "\n".join([f"study {study.study_name!r}: {states}; {title}:", *lines])


def param_text(value: Any) -> str:
    """A sampled param's value as tables and summaries show it: floats to 4 significant digits."""
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


# best.yaml's head: what its commands do (one home for the explanation, read with ``cat best.yaml``).
BEST_HEADER = """\
# command: trains the best setting in full (the normal budget, the test, every checkpoint); overrides: its arguments.
# trial_command: reproduces the trial exactly (the sweep's budget: no test, no last.ckpt); trial_overrides: its args.
"""


def _entry(trial: optuna.trial.FrozenTrial, base: list[str], full_base: list[str], script: str) -> dict[str, Any]:
    params = {name: trial.params[name] for name in sorted(trial.params)}
    settings = [f"{name}={override_value(value)}" for name, value in params.items()]
    full, exact = [*full_base, *settings], [*base, *settings]
    return {
        "trial": trial.number,
        "command": shlex.join(["python", script, *full]),
        "trial_command": shlex.join(["python", script, *exact]),
        "params": params,
        "run_dir": trial.user_attrs.get("run_dir"),
        "overrides": full,
        "trial_overrides": exact,
    }


class _BestDumper(yaml.SafeDumper):
    """Commands as literal blocks: each on a line of its own, never wrapped or re-quoted, copyable as printed."""


_BestDumper.add_representer(
    str,
    lambda dumper, value: dumper.represent_scalar(
        "tag:yaml.org,2002:str", value, style="|" if value.startswith("python ") else None
    ),
)


def write_best(
    study: optuna.Study,
    sweep_dir: Path,
    base_overrides: Iterable[str],
    metrics: list[str],
    full_overrides: Iterable[str] | None = None,
    script: str = "src/train.py",
) -> Path | None:
    """``<sweep dir>/best.yaml``: the best trial (or the Pareto front) with the commands to train it again.

    ``command`` (first) trains the best setting in full: the study's fixed overrides without the sweep-only
    groups (``hparams_search``: the sweep's budget, no test) plus the trial's params. ``trial_command``
    reproduces the trial exactly (every fixed override). ``overrides`` / ``trial_overrides`` are their
    arguments: ``python src/train.py $(python -c "import yaml;print(*yaml.safe_load(open('best.yaml'))['overrides'])")``
    """
    ranked = ranked_trials(study)
    if not ranked:
        return None
    base = list(base_overrides)
    full = list(full_overrides) if full_overrides is not None else base
    directions = [d.name.lower() for d in study.directions]
    if len(directions) == 1:
        best = ranked[0]
        content: dict[str, Any] = {
            "study_name": study.study_name,
            "metric": metrics[0],
            "direction": directions[0],
            "value": best.value,
            **_entry(best, base, full, script),
        }
    else:
        content = {
            "study_name": study.study_name,
            "metrics": metrics,
            "directions": directions,
            "pareto_front": [{"values": list(t.values), **_entry(t, base, full, script)} for t in ranked],
        }
    sweep_dir.mkdir(parents=True, exist_ok=True)
    path = sweep_dir / BEST_FILE
    body = yaml.dump(content, Dumper=_BestDumper, sort_keys=False, width=float("inf"), allow_unicode=True)
    path.write_text(BEST_HEADER + body)
    return path


def write_optimization_results(study: optuna.Study, sweep_dir: Path) -> Path | None:
    """``optimization_results.yaml`` as the published plugin writes it: ``name``, ``best_params`` and
    ``best_value`` (one objective) or ``solutions`` (the Pareto front's params and values)."""
    ranked = ranked_trials(study)
    if not ranked:
        return None
    if len(study.directions) == 1:
        content: dict[str, Any] = {"name": "optuna", "best_params": ranked[0].params, "best_value": ranked[0].value}
    else:
        content = {"name": "optuna", "solutions": [{"params": t.params, "values": list(t.values)} for t in ranked]}
    path = sweep_dir / RESULTS_FILE
    path.write_text(OmegaConf.to_yaml(OmegaConf.create(content)))
    return path


def plot_pareto(study: optuna.Study, sweep_dir: Path, metrics: list[str]) -> Path | None:
    """``pareto.png``: every completed trial by its first two objectives, the Pareto front joined by a line."""
    import optuna

    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(study.directions) < 2 or not done:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    front = sorted(study.best_trials, key=lambda t: t.values[1])
    figure, axes = plt.subplots(figsize=(5, 4))
    axes.scatter([t.values[1] for t in done], [t.values[0] for t in done], color="0.6", s=14, label="trials")
    axes.plot([t.values[1] for t in front], [t.values[0] for t in front], "o-", color="C0", label="Pareto front")
    for trial in front:
        axes.annotate(str(trial.number), (trial.values[1], trial.values[0]), fontsize=7, xytext=(3, 3),
                      textcoords="offset points")  # fmt: skip
    axes.set_xlabel(f"{metrics[1]} ({study.directions[1].name.lower()})")
    axes.set_ylabel(f"{metrics[0]} ({study.directions[0].name.lower()})")
    if min(t.values[1] for t in done) > 0:  # sizes span decades: small models would bunch at the left
        axes.set_xscale("log")
    axes.set_title(f"{metrics[0]} vs {metrics[1]}\nstudy {study.study_name}: {len(done)} trials", fontsize=9)
    axes.legend(fontsize=8)
    figure.tight_layout()
    path = sweep_dir / PARETO_PLOT
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
