"""Sweep throughput: the same 12-trial Optuna sweep run four ways, wall time of each whole command.

1. sequential, no pruning (``hydra/sweeper/pruner=none``, Hydra's basic launcher: one trial at a time);
2. sequential with the default median pruner;
3. sequential with the hyperband pruner (``hydra/sweeper/pruner=hyperband``);
4. two joblib workers (``hydra/launcher=joblib hydra.launcher.n_jobs=2``, each trial gets a share of the
   cores) with the median pruner.

The sampler is seeded random search, so every mode proposes the same 12 configurations (conf/hparams_search/
optuna.yaml's space: hidden size and learning rate) and only the scheduling differs. Each mode is its own
study in one SQLite file in a temporary directory; the MNIST-1D cache is shared.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ("mode", "wall s", "complete / pruned / failed", "best val/acc", "speed-up")
MODES = {
    "sequential, no pruning": ["hydra/sweeper/pruner=none"],
    "sequential, median pruning": ["hydra/sweeper/pruner=median"],
    "sequential, hyperband pruning": ["hydra/sweeper/pruner=hyperband"],
    "2 joblib workers, median pruning": [
        "hydra/sweeper/pruner=median",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
    ],
}


def sweep_command(
    mode_overrides: list[str], storage: str, study: str, trials: int, epochs: int, data_dir: Path
) -> list[str]:
    return [
        sys.executable,
        str(ROOT / "src" / "train.py"),
        "-m",
        "hparams_search=optuna",
        "hydra/sweeper/sampler=random",
        "hydra.sweeper.sampler.seed=0",
        f"hydra.sweeper.n_trials={trials}",
        f"hydra.sweeper.storage={storage}",
        f"hydra.sweeper.study_name={study}",
        f"trainer.max_epochs={epochs}",
        f"paths.data_dir={data_dir}",
        *mode_overrides,
    ]


def study_summary(storage: str, study_name: str) -> tuple[str, float, list[dict]]:
    """('complete / pruned / failed' counts, best value, one dict per trial) of the stored study."""
    import optuna

    study = optuna.load_study(study_name=study_name, storage=storage)
    states = [t.state for t in study.trials]
    counts = " / ".join(
        str(states.count(s))
        for s in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
    )
    trials = [
        {
            "number": t.number,
            "params": t.params,
            "state": t.state.name,
            "epochs": len(t.intermediate_values),
            "value": max(t.intermediate_values.values(), default=float("nan")),
            "seconds": (t.datetime_complete - t.datetime_start).total_seconds(),
        }
        for t in sorted(study.trials, key=lambda t: t.number)
    ]
    return counts, study.best_value, trials


def run(trials: int = 12, epochs: int = 15, data_dir: Path | None = None) -> list[tuple]:
    """Rows of COLUMNS, one per mode (speed-up: the first mode's wall time over this one's), each followed by
    the mode's trials (``per_trial_markdown``)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="rnnlab-sweep-bench-") as tmp:
        data_dir = data_dir or Path(tmp) / "data"
        env = {**os.environ, "RNNLAB_ROOT": tmp, "PYTHONWARNINGS": "ignore"}
        for i, (mode, overrides) in enumerate(MODES.items()):
            storage, study = f"sqlite:///{tmp}/sweeps.db", f"mode{i}"
            print(f"  {mode} ...", flush=True)
            start = time.perf_counter()
            subprocess.run(
                sweep_command(overrides, storage, study, trials, epochs, data_dir),
                cwd=ROOT,
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            wall = time.perf_counter() - start
            counts, best, per_trial = study_summary(storage, study)
            rows.append((mode, wall, counts, best, (rows[0][1] if rows else wall) / wall, per_trial))
    return rows


def markdown(rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for mode, wall, counts, best, speedup, _ in rows:
        lines.append(f"| {mode} | {wall:.0f} | {counts} | {best:.3f} | {speedup:.2f}× |")
    return "\n".join(lines) + "\n\n" + per_trial_markdown(rows)


def per_trial_markdown(rows: list[tuple]) -> str:
    """Each trial's setting and, per mode, its seconds (ask to tell), epochs run and state: where the time went."""
    modes = [row[0] for row in rows]
    lines = ["| trial | hidden | lr | " + " | ".join(modes) + " |", "|" + "---|" * (3 + len(modes))]
    for i, first in enumerate(rows[0][5]):
        cells = []
        for row in rows:
            trial = row[5][i] if i < len(row[5]) else None
            cells.append(
                ""
                if trial is None
                else f"{trial['seconds']:.1f} s, {trial['epochs']} ep, {trial['state'].lower()} ({trial['value']:.3f})"
            )
        params = first["params"]
        lines.append(
            f"| {first['number']} | {params.get('model.hidden_size', '')} | "
            f"{params.get('model.optimizer.lr', float('nan')):.2g} | " + " | ".join(cells) + " |"
        )
    sums = [f"{sum(t['seconds'] for t in row[5]):.0f} s in trials" for row in rows]
    lines.append("| all | | | " + " | ".join(sums) + " |")
    return "\n".join(lines)
