"""The framework-overhead benchmark (bench/overhead.py) at a tiny size: what it times and the table it prints."""

from __future__ import annotations

import sys
import time

import pytest

from helpers import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import overhead  # noqa: E402  (bench/ is a folder of scripts, not a package)

TINY_MODEL = ["model=vanilla", "model.hidden_size=8", "+trainer.limit_train_batches=3", "threads=1"]


def test_pairs_leave_out_the_warm_up_pair_and_match_each_rnnlab_epoch_to_the_plain_epoch_after_it():
    interleave = overhead.Interleave(plain=None, clock=time.perf_counter)
    interleave.plain_times = [9.0, 1.0, 2.0, 3.0]  # one per rnnlab epoch start
    interleave.rnnlab_times = [8.0, 4.0, 5.0]  # between those starts: one fewer
    assert interleave.pairs() == [(4.0, 2.0), (5.0, 3.0)]


def test_summary_is_the_ratio_of_mean_epochs_with_the_quartiles_of_the_pair_ratios():
    name, rnnlab, plain, ratio, (low, high) = overhead.summarise("m", [(1.0, 1.0), (3.0, 1.0), (2.0, 1.0), (2.0, 2.0)])
    assert (name, rnnlab, plain) == ("m", 2.0, 1.25) and ratio == pytest.approx(1.6)
    assert low <= 1.0 <= 2.0 <= high  # ratios 1, 1, 2, 3


@pytest.mark.slow
def test_interleaved_run_times_a_plain_epoch_between_rnnlab_epochs(tmp_path, data_dir, monkeypatch):
    epochs, calls = 4, []
    plain_epoch = overhead.PlainLoop.epoch
    monkeypatch.setattr(overhead.PlainLoop, "epoch", lambda self: calls.append(self) or plain_epoch(self))
    pairs = overhead.paired_epochs(TINY_MODEL, epochs, tmp_path, data_dir, time.perf_counter)
    assert len(calls) == epochs  # one plain epoch at the start of every rnnlab epoch
    assert len(pairs) == epochs - 2  # without the warm-up pair and rnnlab's last epoch
    assert all(r > 0 and p > 0 for r, p in pairs)


@pytest.mark.slow
def test_overhead_table(data_dir):
    rows = overhead.run({"vanilla H=8": TINY_MODEL}, epochs=4, data_dir=data_dir)
    ((name, rnnlab, plain, ratio, _),) = rows
    assert name == "vanilla H=8" and ratio == pytest.approx(rnnlab / plain)
    table = overhead.markdown(rows).splitlines()
    assert table[0] == "| " + " | ".join(overhead.COLUMNS) + " |"
    assert table[2].startswith("| vanilla H=8 | ") and "× | " in table[2]
