"""Results table for the generated and text tasks: each task x cell trained through src/train.py with a
fixed budget (the overrides below), then, for text, a sample from the best model via src/generate.py.

    python bench/tasks.py                 # all tasks, builtin cells (make task-results)
    python bench/tasks.py --tasks adding text_char --cells lstm gru --impl custom

Prints a markdown table: the test metrics reached and the wall time of the whole command (this
machine is shared: times are indicative).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from rnnlab.budget import shortened

ROOT = Path(__file__).resolve().parents[1]

# The budget per task: overrides applied to every cell. Stated in the README beside the table.
TASKS = {
    "adding": [
        "data=adding",
        "data.seq_len=100",
        "model.readout=last",
        "model.hidden_size=64",
        "model.optimizer.lr=0.005",
        "trainer.max_epochs=20",
        "model.optimizer.weight_decay=0",
    ],
    "adding_dynamic": [
        "data=adding_dynamic",
        "model.hidden_size=16",
        "model.optimizer.lr=0.01",
        "trainer.max_epochs=100",
        "model.optimizer.weight_decay=0",
    ],
    "sine": [
        "data=sine",
        "model.hidden_size=32",
        "model.optimizer.lr=0.01",
        "trainer.max_epochs=30",
        "model.optimizer.weight_decay=0",
    ],
    "text_char": [
        "data=text_char",
        "model.hidden_size=128",
        "model.optimizer.lr=0.005",
        "trainer.max_epochs=15",
        "model.optimizer.weight_decay=0",
    ],
}
# What the table reports per task (test split).
REPORTED = {
    "adding": ["test/mse", "test/mse_ratio", "test/within_tol"],
    "adding_dynamic": ["test/mse", "test/mse_ratio"],
    "sine": ["test/mse", "test/mse_ratio"],
    "text_char": ["test/bpc", "test/acc"],
}
QUIET = [
    "callbacks.rich_progress_bar=null",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "callbacks.gradient_diagnostics.batches_per_epoch=0",
]


def run(overrides: list[str], cell: str, impl: str, log_dir: str, quiet: list[str] = QUIET) -> dict[str, str]:
    """Train one cell with ``overrides`` (then ``quiet``) through src/train.py; its summary line's metrics, the
    run dir and the wall time (or the error)."""
    args = [
        sys.executable,
        str(ROOT / "src" / "train.py"),
        *overrides,
        f"model={cell}",
        f"model.impl={impl}",
        f"paths.log_dir={log_dir}",
        *quiet,
    ]
    start = time.perf_counter()
    result = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    # the summary line: the run's last [rnnlab] line (its first says what the run is about to do)
    lines = result.stdout.splitlines()
    summary = next((line for line in reversed(lines) if line.startswith("[rnnlab]") and " params=" in line), None)
    if result.returncode != 0 or summary is None:
        return {"error": (result.stderr.strip().splitlines() or ["no output"])[-1], "seconds": f"{seconds:.0f}"}
    metrics = dict(re.findall(r"(\S+)=(\S+)", summary))
    metrics["seconds"] = f"{seconds:.0f}"
    return metrics


def sample(run_dir: str, prompt: str = "The ", length: int = 300) -> str:
    args = [
        sys.executable,
        str(ROOT / "src" / "generate.py"),
        f"ckpt={run_dir}/checkpoints/last.ckpt",
        f"prompt={prompt}",
        f"length={length}",
        "temperature=0.8",
    ]
    result = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        return result.stderr[-500:]
    text = result.stdout.rsplit("[rnnlab]", 1)[0]
    return "\n".join(line for line in text.splitlines() if not re.match(r"\[\d{4}-\d\d-\d\d ", line)).strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--cells", nargs="+", default=["vanilla", "gru", "lstm"], choices=["vanilla", "gru", "lstm"])
    parser.add_argument("--impl", default="builtin", choices=["builtin", "custom"])
    parser.add_argument("--log-dir", default=str(Path(os.environ.get("RNNLAB_ROOT") or ROOT) / "logs" / "task-results"))
    options = parser.parse_args()
    options.cells = shortened("bench.cells", options.cells)  # RNNLAB_BUDGET=tiny: the first two cells

    rows = ["| task | cell | test metrics | wall time |", "|---|---|---|---|"]
    samples = []
    for task in options.tasks:
        results = {}
        for cell in options.cells:
            m = results[cell] = run(TASKS[task], cell, options.impl, options.log_dir)
            shown = (
                m["error"]
                if "error" in m
                else ", ".join(f"{key.split('/')[1]} {float(m[key]):.4f}" for key in REPORTED[task] if key in m)
            )
            rows.append(f"| {task} | {cell}-{options.impl} | {shown} | {m['seconds']} s |")
            print(rows[-1], flush=True)
        finished = {cell: m for cell, m in results.items() if "error" not in m}
        if task.startswith("text") and finished:
            best = min(finished, key=lambda cell: float(finished[cell][REPORTED[task][0]]))
            samples.append(
                f"Sample from the best ({best}-{options.impl}, {task}):\n\n" + sample(finished[best]["run_dir"])
            )
    print("\n" + "\n".join(rows))
    for text in samples:
        print("\n" + text)


if __name__ == "__main__":
    main()
