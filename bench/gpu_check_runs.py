"""Part 2 of the GPU check: ``src/train.py trainer=gpu`` for each cell x impl, seconds per epoch from the run's
own epoch clock (``gpu_probes.EpochClock``)."""

from __future__ import annotations

import json
import re
import statistics
import time
from pathlib import Path

from gpu_check_runner import ROOT, Context, Outcome, Overrun, run_command, tail_block

CELLS = ("vanilla", "gru", "lstm")
IMPLS = ("custom", "builtin")
EPOCHS = 5  # timed runs
TITLE = f"2. Timed runs (`src/train.py trainer=gpu`, {EPOCHS} epochs)"
# What the runs train on (a CPU smoke run of the plumbing can set it to "cpu"; the check itself never does).
TRAINER = "gpu"


def epoch_times(epochs: list[dict]) -> dict[str, float]:
    """From ``EpochClock``'s records: the median training seconds of the epochs after the first (the first pays
    for cuDNN/CUDA warm-up), the first epoch's, the median validation seconds, and the median time from one
    epoch's start to the next (everything: validation, checkpoints, logging)."""
    later = epochs[1:] or epochs
    starts = [e["start"] for e in epochs]
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    return {
        "train": statistics.median(e["seconds"] for e in later),
        "first": epochs[0]["seconds"],
        "validation": statistics.median(e["validation_seconds"] for e in later),
        "epoch_to_epoch": statistics.median(gaps) if gaps else float("nan"),
    }


def runs_table(rows: list[dict]) -> str:
    lines = [
        "| cell | impl | train s/epoch (epochs 2–5, median) | first epoch s | validation s/epoch | epoch start to "
        "start s | whole command s | test acc |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t = r.get("times")
        if t is None:
            lines.append(f"| {r['cell']} | {r['impl']} | {r['status']} | | | | {r.get('wall', float('nan')):.1f} | |")
            continue
        lines.append(
            f"| {r['cell']} | {r['impl']} | {t['train']:.3f} | {t['first']:.3f} | {t['validation']:.3f} | "
            f"{t['epoch_to_epoch']:.3f} | {r['wall']:.1f} | {r.get('test_acc', '')} |"
        )
    ratios = custom_over_builtin(rows)
    if ratios:
        lines += ["", "Custom / built-in (cuDNN) training s/epoch: " + ", ".join(f"{c} {x:.2f}×" for c, x in ratios)]
    return "\n".join(lines)


def custom_over_builtin(rows: list[dict]) -> list[tuple[str, float]]:
    by = {(r["cell"], r["impl"]): r["times"]["train"] for r in rows if r.get("times")}
    return [(c, by[(c, "custom")] / by[(c, "builtin")]) for c in CELLS if (c, "custom") in by and (c, "builtin") in by]


def run_command_line(ctx: Context, cell: str, impl: str, clock: Path) -> list[str]:
    return [
        ctx.python,
        str(ROOT / "src" / "train.py"),
        f"trainer={TRAINER}",
        f"model={cell}",
        f"model.impl={impl}",
        f"trainer.max_epochs={EPOCHS}",
        "trainer.enable_progress_bar=false",  # no terminal to draw on
        "callbacks.rich_progress_bar=null",
        f"paths.data_dir={ctx.data_dir}",
        "+callbacks.epoch_clock._target_=gpu_probes.EpochClock",
        f"+callbacks.epoch_clock.path={clock}",
    ]


def timed_run(ctx: Context, row: dict, clock: Path, deadline: float) -> Overrun | None:
    """Run ``row``'s command and fill in its status, wall time and epoch times; the ``Overrun`` if it overran."""
    start = time.monotonic()
    try:
        result = run_command(row["command"], deadline, ctx.env)
    except Overrun as overrun:
        row["status"], row["wall"] = "stopped (budget)", time.monotonic() - start
        row["error"] = tail_block(overrun.stdout + overrun.stderr)
        return overrun
    row["wall"] = time.monotonic() - start
    if result.returncode != 0 or not clock.exists():
        row["status"] = f"failed (exit {result.returncode})"
        row["error"] = tail_block(result.stdout + result.stderr)
        return None
    row["times"] = epoch_times(json.loads(clock.read_text()))
    accuracy = re.search(r"test/acc=([0-9.]+)", result.stdout)
    row["test_acc"] = accuracy.group(1) if accuracy else ""
    row["status"] = "ran"
    return None


def part_runs(ctx: Context, deadline: float) -> Outcome:
    rows: list[dict] = []
    stopped = None
    for cell in CELLS:
        for impl in IMPLS:
            clock = ctx.work / f"epochs-{cell}-{impl}.json"
            row = {"cell": cell, "impl": impl, "command": run_command_line(ctx, cell, impl, clock)}
            rows.append(row)
            if stopped:
                row["status"] = "not run (budget spent)"
                continue
            stopped = timed_run(ctx, row, clock, deadline)
    return runs_outcome(rows, stopped)


def runs_outcome(rows: list[dict], stopped: Overrun | None) -> Outcome:
    body = (
        runs_table(rows)
        + "\n\n"
        + RUNS_NOTE
        + "\n\nCommand (per cell and impl): `"
        + " ".join(rows[0]["command"][1:]).replace(str(ROOT) + "/", "")
        + "`"
    )
    for r in rows:
        if "error" in r:
            body += f"\n\n{r['cell']} / {r['impl']} {r['status']}; its last lines:\n\n{r['error']}"
    ratios = custom_over_builtin(rows)
    headline = "custom / cuDNN s/epoch: " + ", ".join(f"{c} {x:.1f}×" for c, x in ratios) if ratios else ""
    if stopped:
        ran = sum(r["status"] == "ran" for r in rows)
        return Outcome(
            "overran", f"stopped at its budget, {ran} of {len(rows)} runs done; {headline}".rstrip("; "), body
        )
    failed = [r for r in rows if r["status"] != "ran"]
    if failed:
        return Outcome("failed", f"{len(failed)} of {len(rows)} runs failed; {headline}".rstrip("; "), body)
    return Outcome("passed", headline, body)


RUNS_NOTE = (
    "Seconds per epoch come from the run itself (`gpu_probes.EpochClock`, added with `+callbacks.epoch_clock`): "
    "the GPU is synchronized at each epoch's start and end and around its validation; *train s/epoch* is the "
    "training part (validation taken out), median over epochs 2–5 (the first pays for CUDA/cuDNN warm-up and is "
    "shown apart); *epoch start to start* holds everything an epoch costs (validation, checkpoints, logging). "
    "*Whole command* is the subprocess's wall time: start-up (imports, data), 5 epochs and the test; the first "
    "run also generates the MNIST-1D cache. Defaults of `make train` otherwise (LSTM/GRU/vanilla H=128, batch "
    "100, AdamW, one-cycle), with the progress bar off."
)
