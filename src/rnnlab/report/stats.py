"""Statistics over runs: seeds of one setting grouped, means and sample standard deviations."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rnnlab.cells import CELLS
from rnnlab.report.read import FLOOR, Run


def mean_std(values: Sequence[float | None]) -> tuple[float, float, int]:
    """Mean and sample standard deviation (ddof=1; 0 for one value) of the finite values, and their count."""
    finite = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(finite) == 0:
        return math.nan, math.nan, 0
    return float(finite.mean()), float(finite.std(ddof=1)) if len(finite) > 1 else 0.0, len(finite)


def geometric_mean(values: list[float]) -> float:
    positive = [v for v in values if math.isfinite(v) and v > 0]
    return float(np.exp(np.mean(np.log(positive)))) if positive else math.nan


@dataclass
class Group:
    task: str
    name: str
    runs: list[Run]

    @property
    def key(self):
        cell, impl, hidden = self.runs[0].model["cell"], self.runs[0].model["impl"], self.runs[0].model["hidden_size"]
        return self.task, CELLS.index(cell) if cell in CELLS else len(CELLS), cell, impl, hidden

    @property
    def label(self) -> str:
        return self.name

    @property
    def test_metric(self) -> str:
        return f"test/{self.runs[0].base_metric}"

    @property
    def best_metric(self) -> str:
        return self.runs[0].best_metric

    def test(self) -> tuple[float, float, int]:
        return mean_std([r.last(self.test_metric) for r in self.runs])

    def best(self) -> tuple[float, float, int]:
        return mean_std([r.last(self.best_metric) for r in self.runs])

    def params(self) -> str:
        return span([r.params for r in self.runs if r.params is not None], ",")

    def epochs(self) -> str:
        return span([len(r.val_curve) for r in self.runs], "d")

    def wall_time(self) -> float:
        return mean_std([r.wall_time for r in self.runs])[0]

    def grad_ratio(self) -> float:
        return geometric_mean([r.grad_ratio for r in self.runs])

    def val_band(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Epochs (1-based), mean and std of the validation curve over the runs that reached each epoch."""
        curves = [r.val_curve for r in self.runs if r.val_curve]
        length = max((len(c) for c in curves), default=0)
        means, stds = [], []
        for epoch in range(length):
            mean, std, _ = mean_std([c[epoch] for c in curves if len(c) > epoch])
            means.append(mean)
            stds.append(std)
        return np.arange(1, length + 1), np.array(means), np.array(stds)

    def grad_profile(self, which: str = "last") -> np.ndarray | None:
        """‖∂L/∂h_t‖/‖∂L/∂h_T‖ at each run's first or last diagnosed epoch, geometric mean over runs."""
        profiles = []
        for run in self.runs:
            if run.grad_by_step:
                norms = np.array(run.grad_by_step[(max if which == "last" else min)(run.grad_by_step)])
                if norms[-1] > 0:
                    profiles.append(np.maximum(norms, FLOOR) / norms[-1])
        if not profiles or len({len(p) for p in profiles}) != 1:
            return None
        return np.exp(np.log(np.stack(profiles)).mean(axis=0))


def group_runs(runs: list[Run]) -> list[Group]:
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.task, run.group), []).append(run)
    return sorted(
        (
            Group(task, name, sorted(members, key=lambda r: (r.config.get("seed", 0), str(r.run_dir))))
            for (task, name), members in groups.items()
        ),
        key=lambda g: g.key,
    )


def span(values: list[int], fmt: str) -> str:
    """One value, or the range of differing values ("?" for none)."""
    if not values:
        return "?"
    low, high = min(values), max(values)
    return format(low, fmt) if low == high else f"{low:{fmt}}–{high:{fmt}}"
