"""The framework-overhead benchmark (bench/overhead.py) at a tiny size: what it times and the table it prints."""

from __future__ import annotations

import sys
import time

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import overhead  # noqa: E402  (bench/ is a folder of scripts, not a package)

TINY_MODEL = ["model=vanilla", "model.hidden_size=8", "+trainer.limit_train_batches=3", "threads=1"]


def test_intervals_leave_out_the_warm_up_epoch():
    assert overhead._intervals([0.0, 5.0, 6.0, 8.0]) == [1.0, 2.0]


@pytest.mark.slow
def test_overhead_times_epochs_between_epoch_starts(tmp_path, data_dir):
    epochs = 4
    rnnlab = overhead.rnnlab_epochs(TINY_MODEL, epochs, tmp_path, data_dir, time.perf_counter)
    plain = overhead.plain_epochs(TINY_MODEL, epochs, tmp_path, data_dir, time.perf_counter)
    # Epoch starts 0..3: the warm-up epoch and the last one (which ends with the once-per-run work) are left out.
    assert len(rnnlab) == len(plain) == epochs - 2
    assert all(t > 0 for t in rnnlab + plain)


@pytest.mark.slow
def test_overhead_table(data_dir):
    rows = overhead.run({"vanilla H=8": TINY_MODEL}, epochs=3, rounds=1, data_dir=data_dir)
    (name, rnnlab, plain, ratio), = rows
    assert name == "vanilla H=8" and ratio == pytest.approx(rnnlab / plain)
    table = overhead.markdown(rows).splitlines()
    assert table[0] == "| " + " | ".join(overhead.COLUMNS) + " |"
    assert table[2].startswith("| vanilla H=8 | ") and table[2].endswith("× |")
