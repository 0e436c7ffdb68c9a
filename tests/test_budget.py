"""The tiny budget (``rnnlab.budget``): the caps ``RNNLAB_BUDGET=tiny`` applies, and the same caps as the
overrides tests write into their own commands (one home for both)."""

from __future__ import annotations

import pytest

from helpers import compose_config
from rnnlab import budget


def test_the_tests_overrides_are_the_caps_the_budget_applies(tmp_path, data_dir, monkeypatch):
    cfg = compose_config("train", budget.overrides(), tmp_path, data_dir)
    monkeypatch.setenv(budget.ENV, "tiny")
    assert budget.apply(cfg) == {}  # nothing left to shrink: the overrides hold every cap
    monkeypatch.delenv(budget.ENV)
    cfg = compose_config("train", [], tmp_path, data_dir)
    monkeypatch.setenv(budget.ENV, "tiny")
    assert set(budget.apply(cfg)) == set(budget.RUN_CAPS)  # mnist1d has no data.seq_len


def test_a_test_replaces_the_numbers_it_picks_itself(tmp_path, data_dir):
    cfg = compose_config("train", budget.overrides(max_epochs=5, limit_val_batches=1), tmp_path, data_dir)
    assert (cfg.trainer.max_epochs, cfg.trainer.limit_val_batches, cfg.trainer.limit_train_batches) == (5, 1, 3)
    with pytest.raises(ValueError, match="max_epoch"):
        budget.overrides(max_epoch=5)


def test_the_budget_keeps_a_studys_first_two_cells(monkeypatch):
    cells = ["vanilla", "gru", "lstm"]
    assert budget.shortened("study.cells", cells) == cells
    monkeypatch.setenv(budget.ENV, "tiny")
    assert budget.shortened("study.cells", cells) == ["vanilla", "gru"]
    assert budget.shortened("study.cells", ["lstm"]) == ["lstm"]


def test_the_budget_keeps_the_bench_scripts_first_two_cells(monkeypatch):
    """bench/tasks.py, adding_lengths.py and results.py train each cell the same way: two of them prove it (the
    document tests run the three under the budget)."""
    cells = ["vanilla", "gru", "lstm"]
    assert budget.shortened("bench.cells", cells) == cells
    monkeypatch.setenv(budget.ENV, "tiny")
    assert budget.shortened("bench.cells", cells) == ["vanilla", "gru"]
