"""The test budget: ``RNNLAB_BUDGET=tiny`` caps a composed config's epochs, batches, trials, seeds, sizes and
the study's cells.

A leaf (imports nothing of rnnlab). The caps apply after composition and after validation, so a command's own
values are shrunk too (``hydra.sweeper.n_trials=50`` runs 2 trials) while a value the command gets wrong is
still refused as it would be without the budget. The budget only shrinks numbers: it never switches a code
path off (the model summary, the progress bar, the test, the checkpoints all stay). The document-command and
shipped-config tests run every command under it; a user can too, for a quick check of a long command.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

ENV = "RNNLAB_BUDGET"
BUDGETS = ("tiny",)

# A run's config key -> the most it may be under ``RNNLAB_BUDGET=tiny`` (``apply``); a missing trainer batch
# limit is added.
TINY: Mapping[str, int] = {
    "trainer.max_epochs": 2,
    "trainer.limit_train_batches": 3,
    "trainer.limit_val_batches": 2,
    "trainer.limit_test_batches": 2,
    "trainer.log_every_n_steps": 1,  # with 3 batches an epoch a larger interval would never log a step
    "model.hidden_size": 8,
    "data.seq_len": 100,  # the sequence tasks' steps (the dynamic adding problem has 3000)
    "length": 20,  # generate.py: steps generated
}
# Counts read before any run's config exists (``capped``): the sweeper's trials, the study's plan, the compare
# experiment's seeds (conf/experiment/compare_cells.yaml), the bench scripts' seeds.
TINY_COUNTS: Mapping[str, int] = {
    "hydra.sweeper.n_trials": 2,
    "study.trials": 2,
    "study.trial_epochs": 1,
    "study.epochs": 2,
    "study.seeds": 2,
    "compare.seeds": 2,
    "bench.seeds": 1,
    "bench.repeats": 1,  # bench/run.py, bench/runs_listing.py: timed repeats, epochs and records
    "bench.epochs": 1,
    "bench.records": 20,
}
# Lists read before any run's config exists: the first entries kept (``shortened``). A study of two cells still
# tunes, confirms and compares; each cell is the same code path. ``bench.cells``: the cells of bench/tasks.py,
# adding_lengths.py and results.py (each cell's run is the same command).
TINY_LISTS: Mapping[str, int] = {"study.cells": 2, "bench.cells": 2}
ADDED = ("trainer.limit_train_batches", "trainer.limit_val_batches", "trainer.limit_test_batches")
# The caps every run has (a task's data.* and generate's length only some configs have): ``overrides``.
RUN_CAPS = {key: cap for key, cap in TINY.items() if key.startswith(("trainer.", "model."))}


def active() -> str | None:
    """The budget in force (``tiny``), None without one; an unknown name is refused in one line."""
    name = os.environ.get(ENV, "").strip()
    if not name:
        return None
    if name not in BUDGETS:
        raise SystemExit(f"error: {ENV}={name!r} is not allowed; allowed: {', '.join(BUDGETS)} (or unset)")
    return name


def environment() -> dict[str, str]:
    """The budget in force as the environment a run's record keeps (``rnnlab runs rerun`` sets it again); {}
    without one."""
    name = active()
    return {ENV: name} if name else {}


def capped(key: str, value: Any) -> Any:
    """``value`` of the count ``key`` (one of ``TINY_COUNTS``) under the active budget."""
    if active() is None or isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return value
    return min(value, TINY_COUNTS[key])


def shortened(key: str, values: list[Any]) -> list[Any]:
    """The first entries of the list ``key`` (one of ``TINY_LISTS``) under the active budget."""
    return values if active() is None else values[: TINY_LISTS[key]]


def overrides(**replaced: int) -> list[str]:
    """The tiny budget as Hydra overrides of one run, for a command composed by a test or script that picks
    some numbers itself: ``TINY``'s trainer and model caps (not a task's or generate's, which only some
    configs have), each replaceable by its last key part (``overrides(max_epochs=1, limit_train_batches=8)``).
    Batch limits are ``++``: a trainer config may or may not set them."""
    unknown = set(replaced) - {key.rpartition(".")[2] for key in RUN_CAPS}
    if unknown:
        raise ValueError(f"not a tiny-budget key: {sorted(unknown)}")
    return [
        f"{'++' if key in ADDED else ''}{key}={replaced.get(key.rpartition('.')[2], cap)}"
        for key, cap in RUN_CAPS.items()
    ]


def count_overrides(prefix: str) -> list[str]:
    """The tiny budget's counts under ``prefix`` (``"study."``) as overrides, for a test that writes its own
    command."""
    return [f"{key}={cap}" for key, cap in TINY_COUNTS.items() if key.startswith(prefix)]


def _capped(key: str, value: Any, cap: int) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value  # null, a string: not a number to shrink
    if key in ADDED and isinstance(value, float) and value <= 1.0:
        return cap  # Lightning reads a float <= 1 as a fraction of the batches: give a count instead
    return min(value, cap) if value > 0 else value  # 0 and negatives stay: validation has judged them


def apply(cfg: Any, keep_model: bool = False) -> dict[str, Any]:
    """Cap ``cfg`` (a DictConfig) in place under the active budget; returns what changed (key -> new value).

    ``keep_model``: the model's sizes stay (a checkpoint is loaded into it: resume, eval, generate).
    """
    if active() is None:
        return {}
    from omegaconf import OmegaConf, open_dict

    changed: dict[str, Any] = {}
    with open_dict(cfg):
        for key, cap in TINY.items():
            if keep_model and key.startswith("model."):
                continue
            parent_key, _, leaf = key.rpartition(".")
            parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
            if parent is None:
                continue
            if leaf not in parent:
                if key in ADDED:  # the trainer's default: every batch
                    parent[leaf] = changed[key] = cap
                continue
            value = parent[leaf]
            new = cap if key == "trainer.max_epochs" and value == -1 else _capped(key, value, cap)  # -1: no limit
            if new != value:
                parent[leaf] = changed[key] = new
    return changed
