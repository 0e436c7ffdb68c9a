"""What a sweep prints while it runs: one line per trial as it starts and as it ends, the running best, the time
left. Lines start with ``[sweep]`` and go to stdout at once (trials of a parallel sweep end in any order).

A trial is named by its Optuna trial number everywhere (its ``trial_<n>`` folder, the study's table, the best
trial): ``trial 3 (...) started, 2 of 4 in this sweep``; the count says how far this sweep is.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from rnnlab.console import SWEEP, say


def short_params(params: dict[str, Any]) -> str:
    """``hidden_size=46, lr=0.051``: the last part of each key, values to 3 significant digits."""
    shown = []
    for key, value in params.items():
        name = key.rsplit(".", 1)[-1].lstrip("+")
        shown.append(f"{name}={value:.3g}" if isinstance(value, float) else f"{name}={value}")
    return ", ".join(shown)


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes < 60 else f"{minutes / 60:.1f} h"


class Progress:
    """Counts this sweep's trials and prints their lines; ``parallel`` trials run at once (for the estimate)."""

    def __init__(self, n_trials: int, parallel: int, maximize: list[bool], metrics: list[str]) -> None:
        self.n_trials, self.parallel, self.maximize, self.metrics = n_trials, parallel, maximize, metrics
        self.started: dict[int, tuple[float, str]] = {}  # trial number -> (start time, "trial n (params)")
        self.durations: list[float] = []
        self.best: tuple[float, int] | None = None  # (value, trial) of a single-objective study
        self.lock = threading.Lock()

    @staticmethod
    def say(line: str) -> None:
        say(line, prefix=SWEEP)

    def start(self, number: int, position: int, params: dict[str, Any], retry_of: int | None = None) -> None:
        """``number``: the Optuna trial number; ``position``: how many trials this sweep has started, this one
        included (1-based)."""
        label = f"trial {number} ({short_params(params)})"
        with self.lock:
            self.started[number] = (time.monotonic(), label)
        again = f"; it runs trial {retry_of} again (that one was lost)" if retry_of is not None else ""
        self.say(f"{label} started, {position} of {self.n_trials} in this sweep{again}")

    def end(self, number: int, outcome: str, values: list[float] | None, remaining: int) -> None:
        """``outcome``: what happened ("pruned at epoch 3", "failed: ...", "done: val/acc_best=0.95")."""
        with self.lock:
            began, label = self.started.pop(number, (time.monotonic(), f"trial {number}"))
            took = time.monotonic() - began
            self.durations.append(took)
            if values is not None and len(values) == 1:
                better = self.best is None or (
                    values[0] > self.best[0] if self.maximize[0] else values[0] < self.best[0]
                )
                if better:
                    self.best = (values[0], number)
            parts = [f"{label} ... {outcome}, {duration(took)}"]
            if self.best is not None:
                parts.append(f"best {self.metrics[0]}={self.best[0]:.4g} (trial {self.best[1]})")
            if remaining > 0:
                mean = sum(self.durations) / len(self.durations)
                waves = -(-remaining // max(1, self.parallel))
                parts.append(f"~{duration(mean * waves)} left for {remaining} more")
        self.say("; ".join(parts))
