"""Learning-rate schedules built by ``conf/model/scheduler``: ``configure_optimizers`` gives them the run's steps."""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import OneCycleLR

MIN_CYCLE = 3  # steps: one at the initial lr, one at the peak, one annealed


def one_cycle(optimizer: torch.optim.Optimizer, total_steps: int, pct_start: float = 0.25, **kwargs) -> OneCycleLR:
    """torch's ``OneCycleLR`` with a warm-up that fits any number of steps >= 1.

    ``OneCycleLR`` interpolates over phases whose length is computed from ``pct_start * total_steps``; a
    warm-up of exactly one step (4 steps at 0.25) divides by zero, one of less than a step skips the warm-up.
    Here the warm-up spans at least 2 steps (the initial lr, then the peak) and the annealing at least one,
    moving ``pct_start`` only when the run is too short for it. A run of fewer than ``MIN_CYCLE`` steps
    follows the start of a ``MIN_CYCLE``-step cycle: 1 step trains at the initial lr, 2 steps warm up to
    the peak (the run ends before the annealing).
    """
    steps = max(int(total_steps), MIN_CYCLE)
    warmup = pct_start * steps
    if not 2 <= warmup <= steps - 1:
        pct_start = min(max(warmup, 2), steps - 1) / steps
    return OneCycleLR(optimizer, total_steps=steps, pct_start=float(pct_start), **kwargs)
