"""MNIST-1D results of the tuned configs (conf/experiment/mnist1d_best_<cell>.yaml): test accuracy as
mean ± std over seeds, each run through src/train.py exactly as a user would run it.

    python bench/results.py                              # make results: 3 cells x seeds 0 1 2
    python bench/results.py --cells gru --seeds 0 1 2 --jobs 2

``--jobs 2`` runs two at a time with one torch thread each (wall times then are those of a shared
machine; run with --jobs 1 to quote the time of one run on all cores). The thread count changes the
floating-point summation order, so the accuracies of one seed differ a little between the two (the
README's table was measured with one thread per run). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rnnlab.budget import capped, shortened
from rnnlab.devices import cpu_share
from tasks import ROOT, run  # bench/tasks.py

CELLS = ("gru", "lstm", "vanilla")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", nargs="+", default=list(CELLS), choices=CELLS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (threads = cores // jobs)")
    parser.add_argument("--log-dir", default=str(Path(os.environ.get("RNNLAB_ROOT") or ROOT) / "logs" / "results"))
    options = parser.parse_args()
    options.seeds = options.seeds[: capped("bench.seeds", len(options.seeds))]  # RNNLAB_BUDGET=tiny: one seed
    options.cells = shortened("bench.cells", options.cells)  # and the first two cells
    threads = cpu_share(options.jobs)

    def one(cell: str, seed: int) -> dict[str, str]:
        overrides = [f"experiment=mnist1d_best_{cell}", f"seed={seed}", f"threads={threads}"]
        # Default callbacks (the diagnosed batches are part of the training arithmetic), no progress bar.
        result = run(overrides, cell, "builtin", options.log_dir, quiet=["trainer.enable_progress_bar=false"])
        print(
            f"{cell} seed {seed}: "
            + (
                result.get("error")
                or f"test/acc {float(result['test/acc']):.4f}, val/acc_best {float(result['val/acc_best']):.4f}, "
                f"{result['seconds']} s"
            ),
            flush=True,
        )
        return result

    jobs = [(cell, seed) for cell in options.cells for seed in options.seeds]
    with ThreadPoolExecutor(options.jobs) as pool:
        results = dict(zip(jobs, pool.map(lambda job: one(*job), jobs)))

    print(
        f"\n| config | test acc, mean ± std ({len(options.seeds)} seeds) | per seed | best val acc (mean) | "
        f"wall time per run (mean) |\n|---|---|---|---|---|"
    )
    for cell in options.cells:
        done = [results[cell, s] for s in options.seeds if "error" not in results[cell, s]]
        if not done:
            print(f"| mnist1d_best_{cell} | failed: {results[cell, options.seeds[0]]['error']} | | | |")
            continue
        accs = [100 * float(r["test/acc"]) for r in done]
        spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
        vals = statistics.mean(100 * float(r["val/acc_best"]) for r in done)
        seconds = statistics.mean(float(r["seconds"]) for r in done)
        print(
            f"| `experiment=mnist1d_best_{cell}` | {statistics.mean(accs):.2f}% ± {spread:.2f} | "
            f"{', '.join(f'{a:.1f}' for a in accs)} | {vals:.2f}% | {seconds:.0f} s |"
        )


if __name__ == "__main__":
    main()
