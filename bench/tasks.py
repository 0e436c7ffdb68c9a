"""Results table for the generated tasks: each task x cell trained through src/train.py with a fixed budget.

    python bench/tasks.py                 # all tasks, builtin cells (make task-results)
    python bench/tasks.py --tasks adding --cells lstm gru --impl custom

Prints a markdown table: the metric reached on the test split, the trivial-predictor ratio, and the
wall time of the whole command (this machine is shared: times are indicative).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The budget per task: overrides applied to every cell. Stated in the README beside the table.
TASKS = {
    "adding": ["data=adding", "data.seq_len=100", "model.readout=last", "model.hidden_size=64",
               "model.optimizer.lr=0.005", "trainer.max_epochs=20", "model.optimizer.weight_decay=0"],
    "adding_dynamic": ["data=adding_dynamic", "model.hidden_size=16", "model.optimizer.lr=0.01",
                       "trainer.max_epochs=150", "model.optimizer.weight_decay=0"],
    "sine": ["data=sine", "model.hidden_size=32", "model.optimizer.lr=0.01", "trainer.max_epochs=30",
             "model.optimizer.weight_decay=0"],
}
QUIET = ["callbacks.rich_progress_bar=null", "+trainer.enable_progress_bar=false",
         "+trainer.enable_model_summary=false"]


def run(task: str, cell: str, impl: str, log_dir: str) -> dict[str, str]:
    args = [sys.executable, str(ROOT / "src" / "train.py"), *TASKS[task], f"model={cell}", f"model.impl={impl}",
            f"paths.log_dir={log_dir}", *QUIET]
    start = time.perf_counter()
    result = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    summary = next((line for line in result.stdout.splitlines() if line.startswith("[rnnlab]")), None)
    if result.returncode != 0 or summary is None:
        return {"error": (result.stderr.strip().splitlines() or ["no output"])[-1], "seconds": f"{seconds:.0f}"}
    metrics = dict(re.findall(r"(\S+)=(\S+)", summary))
    metrics["seconds"] = f"{seconds:.0f}"
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--cells", nargs="+", default=["vanilla", "gru", "lstm"], choices=["vanilla", "gru", "lstm"])
    parser.add_argument("--impl", default="builtin", choices=["builtin", "custom"])
    parser.add_argument("--log-dir", default=str(ROOT / "logs" / "task-results"))
    options = parser.parse_args()

    rows = ["| task | cell | test MSE | MSE / trivial | within 0.04 | wall time |", "|---|---|---|---|---|---|"]
    for task in options.tasks:
        for cell in options.cells:
            m = run(task, cell, options.impl, options.log_dir)
            if "error" in m:
                rows.append(f"| {task} | {cell}-{options.impl} | failed: {m['error']} | | | {m['seconds']} s |")
            else:
                rows.append(f"| {task} | {cell}-{options.impl} | {float(m['test/mse']):.4f} | "
                            f"{float(m['test/mse_ratio']):.3f} | {m.get('test/within_tol', '–')} | {m['seconds']} s |")
            print(rows[-1], flush=True)
    print("\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
