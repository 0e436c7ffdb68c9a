"""The adding problem: the longest sequence each cell solves (test MSE < 0.01) within a fixed budget.

    python bench/adding_lengths.py                      # make adding-lengths
    python bench/adding_lengths.py --cells lstm --lengths 100 200 400 --impl custom --threads 1

For each cell the sequence length grows through ``--lengths`` until one is not solved (longer ones are
not tried). Every run has the same budget (``BUDGET``: model, optimiser, epochs over the same number of
training sequences), stated in the README beside the table. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rnnlab.budget import shortened
from tasks import ROOT, run  # bench/tasks.py

SOLVED_MSE = 0.01
BUDGET = [
    "data=adding",
    "model.readout=last",
    "model.hidden_size=64",
    "model.optimizer.lr=0.01",
    "model.optimizer.weight_decay=0",
    "trainer.gradient_clip_val=1.0",
    "trainer.max_epochs=40",
]
# Cell-specific initialisation, part of the budget: the LSTM starts with its forget gates open (bias 1).
CELL_INIT = {"lstm": ["model.forget_bias=1.0"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", nargs="+", default=["vanilla", "gru", "lstm"], choices=["vanilla", "gru", "lstm"])
    parser.add_argument("--lengths", nargs="+", type=int, default=[50, 100, 200, 400])
    parser.add_argument("--impl", default="builtin", choices=["builtin", "custom"])
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run (default: all cores)")
    parser.add_argument(
        "--log-dir", default=str(Path(os.environ.get("RNNLAB_ROOT") or ROOT) / "logs" / "adding-lengths")
    )
    options = parser.parse_args()
    options.cells = shortened("bench.cells", options.cells)  # RNNLAB_BUDGET=tiny: the first two cells
    rows = ["| cell | seq_len | test mse | within 0.04 | solved | wall time |", "|---|---|---|---|---|---|"]
    longest = {}
    for cell in options.cells:
        longest[cell] = None
        for length in sorted(options.lengths):
            threads = [f"threads={options.threads}"] if options.threads else []
            overrides = [*BUDGET, *CELL_INIT.get(cell, []), f"data.seq_len={length}", *threads]
            m = run(overrides, cell, options.impl, options.log_dir)
            if "error" in m:
                rows.append(f"| {cell}-{options.impl} | {length} | {m['error']} | | no | {m['seconds']} s |")
                print(rows[-1], flush=True)
                break
            mse = float(m["test/mse"])
            solved = mse < SOLVED_MSE
            rows.append(
                f"| {cell}-{options.impl} | {length} | {mse:.4f} | {float(m['test/within_tol']):.3f} | "
                f"{'yes' if solved else 'no'} | {m['seconds']} s |"
            )
            print(rows[-1], flush=True)
            if not solved:
                break
            longest[cell] = length
    print("\n" + "\n".join(rows))
    print("\n| cell | longest seq_len solved (test MSE < 0.01) |\n|---|---|")
    for cell, length in longest.items():
        print(f"| {cell}-{options.impl} | {length or f'< {min(options.lengths)}'} |")


if __name__ == "__main__":
    main()
