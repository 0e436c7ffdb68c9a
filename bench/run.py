"""Benchmarks entry point (`make bench`, or `python bench/run.py [--quick] [--threads N] [--only a,b]`).

Runs the benchmarks (cells, overhead, sweeps, startup, runs; all by default) and prints their markdown tables
at the end. Threads: ``torch.set_num_threads``
is set explicitly, by default to the number of CPU cores this process may use
(``os.sched_getaffinity``), so results do not depend on torch's own default or on the environment.
``--quick`` is a smoke run: few repeats, numbers only indicative. On a busy machine, ``--threads 1
--clock cpu`` times CPU time instead of wall time, which other processes do not inflate (cells: this
thread's; overhead: this process's). Sweeps and start-up time whole commands: always wall time.
The cells benchmark also runs on a GPU: ``--only cells --device cuda --hidden-sizes 32,128,512 --batch-sizes
100,1000`` (one table per batch size; ``make gpu-check`` runs it so). ``--json PATH`` also writes every table's
rows as JSON (``Table``: benchmark, title, settings, columns, rows; what ``make gpu-check`` reads).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

import cells as cells_bench  # bench/*.py (this script's folder is on sys.path)
import overhead as overhead_bench
import runs_listing as runs_bench
import startup as startup_bench
import sweeps as sweeps_bench
from rnnlab.budget import active as budget_active
from rnnlab.budget import capped
from rnnlab.devices import available_cores

BENCHMARKS = ("cells", "overhead", "sweeps", "startup", "runs")
# The framework-overhead models: the default (LSTM) and the other two cells, hidden size 128, flatten readout.
OVERHEAD_MODELS = {f"{cell} H=128": [f"model={cell}", "model.hidden_size=128"] for cell in ("lstm", "gru", "vanilla")}
# --overhead-ablation: the vanilla model again with one feature off at a time (where the overhead goes).
OVERHEAD_ABLATION = {
    f"vanilla H=128, {name}": [*OVERHEAD_MODELS["vanilla H=128"], *overrides]
    for name, overrides in {
        "no gradient diagnostics": ["callbacks.gradient_diagnostics.batches_per_epoch=0"],
        "no checkpoints": ["~callbacks.model_checkpoint", "~callbacks.last_checkpoint"],
        "callbacks=none": ["callbacks=none"],
        # The floor: what the Trainer itself costs (its loops, hooks and closures) with nothing of rnnlab's added.
        "Lightning alone (no callbacks, checkpoints or logger)": [
            "callbacks=none",
            "+trainer.enable_checkpointing=false",
            "~logger",
        ],
    }.items()
}


@dataclass
class Table:
    """One benchmark's result: its rows (``columns`` first; a row may carry more, such as a sweep's trials),
    the settings they were measured with, and the markdown table printed."""

    benchmark: str
    title: str
    columns: tuple[str, ...]
    rows: list[tuple]
    markdown: str
    settings: dict[str, Any] = field(default_factory=dict)


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str], torch.device]:
    """The options, checked: the benchmarks to run and the cells' device."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run with few repeats")
    parser.add_argument(
        "--threads", type=int, default=available_cores(), help="torch threads (default: available cores)"
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed repeats per measurement (default: 60, quick: 5)"
    )
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall time, or this thread's CPU time (needs --threads 1; not skewed by other processes)",
    )
    parser.add_argument("--sweep-epochs", type=int, default=15, help="epochs per sweep trial (make sweep's budget: 15)")
    parser.add_argument(
        "--overhead-ablation",
        action="store_true",
        help="overhead: also the vanilla model with diagnostics, checkpoints or all callbacks off, and Lightning alone",
    )
    parser.add_argument(
        "--only", default=",".join(BENCHMARKS), help=f"comma-separated subset of {', '.join(BENCHMARKS)}"
    )
    parser.add_argument("--device", default="cpu", help="cells only: cpu (default) or cuda (cuda:<i>)")
    parser.add_argument("--hidden-sizes", type=_sizes, default=(32, 128), help="cells: H values (default: 32,128)")
    parser.add_argument(
        "--batch-sizes", type=_sizes, default=(100,), help="cells: N values, a table each (default: 100)"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write every table's rows to PATH as JSON")
    args = parser.parse_args(argv)
    if args.clock == "cpu" and args.threads != 1:
        parser.error("--clock cpu measures one thread: use it with --threads 1")
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(only) - set(BENCHMARKS))
    if unknown:
        parser.error(f"--only {unknown[0]!r} is not a benchmark; allowed: {', '.join(BENCHMARKS)}")
    return args, only, _device(parser, args.device, only, args.clock)


def main(argv: list[str] | None = None) -> None:
    args, only, device = parse_args(argv)
    torch.set_num_threads(args.threads)
    args.quick = args.quick or budget_active() is not None  # RNNLAB_BUDGET=tiny: a smoke run, one repeat
    repeats = capped("bench.repeats", args.repeats or (5 if args.quick else 60))
    environment = {
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cores": available_cores(),
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "clock": args.clock,
    }
    print(
        f"torch {torch.__version__}, {platform.machine()}, {available_cores()} cores, "
        f"threads={torch.get_num_threads()}, "
        f"repeats={repeats}, clock={args.clock}, load average {os.getloadavg()[0]:.1f}"
    )
    tables = [table for name in BENCHMARKS if name in only for table in RUNNERS[name](args, repeats, device)]
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} (a busy machine inflates and skews the numbers)")
    for table in tables:
        print(f"\n### {table.title}\n\n{table.markdown}")
    if args.json:
        write_json(args.json, environment, tables)


def write_json(path: Path, environment: dict[str, Any], tables: list[Table]) -> None:
    """The tables as ``{"environment": ..., "tables": [Table without its markdown, ...]}``."""
    kept = [{k: v for k, v in asdict(table).items() if k != "markdown"} for table in tables]
    path.write_text(json.dumps({"environment": environment, "tables": kept}, indent=1, default=str) + "\n")


def cells_tables(args: argparse.Namespace, repeats: int, device: torch.device) -> list[Table]:
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    where = "CPU" if device.type == "cpu" else f"{device.type} ({torch.cuda.get_device_name(device)})"
    tables = []
    for batch in args.batch_sizes:
        print(f"cells: forward + backward, N={batch}, T=40, D=1, float32, {where}, median ms ...", flush=True)
        rows = cells_bench.run(
            hidden_sizes=args.hidden_sizes,
            batch=batch,
            repeats=repeats,
            warmup=1 if args.quick else 5,
            clock=clock,
            device=str(device),
        )
        title = f"Cells: custom vs built-in, forward + backward (N={batch}, T=40, D=1, float32, {where})"
        settings = {"N": batch, "T": 40, "D": 1, "dtype": "float32", "device": str(device)}
        tables.append(
            Table("cells", title, cells_bench.COLUMNS, rows, cells_bench.markdown(rows, str(device)), settings)
        )
    return tables


def overhead_tables(args: argparse.Namespace, repeats: int, device: torch.device) -> list[Table]:
    print("overhead: MNIST-1D epochs through rnnlab and a plain PyTorch loop ...", flush=True)
    models = {**OVERHEAD_MODELS, **(OVERHEAD_ABLATION if args.overhead_ablation else {})}
    epochs = 4 if args.quick else 22
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    rows = overhead_bench.run(models, epochs=epochs, clock=clock)
    title = "Framework overhead: one MNIST-1D epoch, rnnlab vs a plain PyTorch loop (batch 100, Adam)"
    return [Table("overhead", title, overhead_bench.COLUMNS, rows, overhead_bench.markdown(rows), {"epochs": epochs})]


def sweeps_tables(args: argparse.Namespace, repeats: int, device: torch.device) -> list[Table]:
    trials, epochs = (4, 2) if args.quick else (12, args.sweep_epochs)
    trials, epochs = capped("hydra.sweeper.n_trials", trials), capped("bench.epochs", epochs)
    print(f"sweeps: {trials} trials x <= {epochs} epochs, {len(sweeps_bench.MODES)} ways ...", flush=True)
    rows = sweeps_bench.run(trials=trials, epochs=epochs)
    title = f"Sweep throughput: {trials} trials (random search, seed 0), <= {epochs} epochs each, wall time"
    settings = {"trials": trials, "epochs": epochs}
    return [Table("sweeps", title, sweeps_bench.COLUMNS, rows, sweeps_bench.markdown(rows), settings)]


def startup_tables(args: argparse.Namespace, repeats: int, device: torch.device) -> list[Table]:
    print("startup: wall time of commands ...", flush=True)
    rows = startup_bench.run(repeats=1 if args.quick else 3)
    return [Table("startup", "Start-up: wall seconds", startup_bench.COLUMNS, rows, startup_bench.markdown(rows))]


def runs_tables(args: argparse.Namespace, repeats: int, device: torch.device) -> list[Table]:
    records = capped("bench.records", 100) if args.quick else 1000
    print(f"runs: `rnnlab runs` over {records:,} run records vs its start-up ...", flush=True)
    rows = runs_bench.run(records=records, repeats=capped("bench.repeats", 3 if args.quick else 15))
    title = f"Run listing: `rnnlab runs --limit 20` over {records:,} records vs its start-up, wall seconds"
    return [Table("runs", title, runs_bench.COLUMNS, rows, runs_bench.markdown(rows), {"records": records})]


RUNNERS = {
    "cells": cells_tables,
    "overhead": overhead_tables,
    "sweeps": sweeps_tables,
    "startup": startup_tables,
    "runs": runs_tables,
}


def _sizes(text: str) -> tuple[int, ...]:
    """'32,128' -> (32, 128): positive integers."""
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give positive integers, e.g. 32,128")
    return sizes


def _device(parser: argparse.ArgumentParser, name: str, only: list[str], clock: str) -> torch.device:
    """The cells benchmark's device, checked: a GPU only for the cells, with wall time, where one is visible."""
    try:
        device = torch.device(name)
    except RuntimeError:
        parser.error(f"--device {name!r} is not a torch device; allowed: cpu, cuda, cuda:<index>")
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        parser.error(f"--device {name!r} is not allowed; allowed: cpu, cuda, cuda:<index>")
    if only != ["cells"]:
        parser.error("--device applies to the cells benchmark only: use it with --only cells")
    if clock != "wall":
        parser.error("--clock cpu does not see GPU work: use wall time with --device cuda")
    if not torch.cuda.is_available():
        parser.error(f"--device {name}: no CUDA GPU is visible (torch {torch.__version__})")
    return device


if __name__ == "__main__":
    main()
