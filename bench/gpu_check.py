"""The GPU check (``make gpu-check``): on a machine with CUDA GPUs, four parts in order, one markdown summary.

1. tests: the suite's GPU tests (``pytest -m cuda``: cuDNN parity, mixed precision, no host-to-device copy
   per step, ``model.compile=true``, eval/generate of a GPU run);
2. runs: ``src/train.py trainer=gpu`` for each cell x impl, 5 epochs, seconds per epoch from the run's own
   epoch clock (``gpu_probes.EpochClock``);
3. sweep: an 8-trial Optuna sweep, 4 joblib workers sharing the GPUs (``trials_per_gpu=4``), checked from its
   storage: each trial's GPU and whether the trials overlapped;
4. cells: ``bench/run.py --only cells --device cuda`` at H = 32, 128, 512 and N = 100, 1000.

Every part has a budget (seconds, its commands' timeout): a part that overruns is stopped (its process group
killed), the summary says so, and the next part runs. The summary is printed at the end and written to
``gpu-check-<UTC time>.md`` (or ``--out``). Without a visible CUDA GPU it stops at once with one line and
exit code 1. Nothing here needs the internet (MNIST-1D and the sine series are generated locally).
docs/gpu-check.md describes the parts and the tables. This script holds the options and the order of the parts;
``gpu_check_runner`` runs them within their budgets and writes the summary; each part is a module of its own
(``gpu_check_tests``, ``gpu_check_runs``, ``gpu_check_sweep``, ``gpu_check_cells``).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path

from gpu_check_cells import TITLE as CELLS_TITLE
from gpu_check_cells import part_cells
from gpu_check_runner import BENCH, ROOT, Context, Outcome, Part, exit_code, render_summary, run_parts
from gpu_check_runs import TITLE as RUNS_TITLE
from gpu_check_runs import part_runs
from gpu_check_sweep import TITLE as SWEEP_TITLE
from gpu_check_sweep import part_sweep
from gpu_check_tests import TITLE as TESTS_TITLE
from gpu_check_tests import part_tests

# Seconds per part; 460 in all, within the 8 minutes on one GPU (with the check's own start-up).
BUDGETS = {"tests": 170.0, "runs": 150.0, "sweep": 80.0, "cells": 60.0}
TITLES = {"tests": TESTS_TITLE, "runs": RUNS_TITLE, "sweep": SWEEP_TITLE, "cells": CELLS_TITLE}
PARTS: dict[str, Callable[[Context, float], Outcome]] = {
    "tests": part_tests,
    "runs": part_runs,
    "sweep": part_sweep,
    "cells": part_cells,
}


def no_gpu_line(torch_version: str, environ: Mapping[str, str]) -> str:
    """The one line printed where no CUDA GPU is visible."""
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    shown = "<unset>" if visible is None else (visible or '""')
    return (
        f"error: no CUDA GPU is visible (torch {torch_version}, CUDA_VISIBLE_DEVICES={shown}); make gpu-check needs one"
    )


def _budget(text: str) -> tuple[str, float]:
    name, _, seconds = text.partition("=")
    if name not in BUDGETS or not seconds:
        raise argparse.ArgumentTypeError(f"{text!r}: give <part>=<seconds>, part one of {', '.join(BUDGETS)}")
    return name, float(seconds)


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """The options, checked, and the parts to run (in the check's order)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="summary file (default: ./gpu-check-<UTC time>.md)")
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated subset of {', '.join(PARTS)}")
    parser.add_argument(
        "--budget", type=_budget, action="append", default=[], help="seconds for a part, e.g. --budget tests=300"
    )
    parser.add_argument("--keep", action="store_true", help="keep the working directory (runs, logs, sweep storage)")
    args = parser.parse_args(argv)
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(only) - set(PARTS))
    if unknown:
        parser.error(f"--only {unknown[0]!r} is not a part; allowed: {', '.join(PARTS)}")
    return args, only


def main(argv: list[str] | None = None) -> int:
    args, only = parse_args(argv)

    import torch  # the only way to know whether CUDA sees a GPU

    if not torch.cuda.is_available() or torch.cuda.device_count() == 0:
        print(no_gpu_line(torch.__version__, os.environ), file=sys.stderr)
        return 1

    started = datetime.now(timezone.utc)
    out = args.out or Path.cwd() / f"gpu-check-{started:%Y%m%d-%H%M%S}.md"
    budgets = {**BUDGETS, **dict(args.budget)}
    header = environment_header(torch, started, argv)
    work = Path(tempfile.mkdtemp(prefix="rnnlab-gpu-check-"))
    ctx = Context(sys.executable, work, work / "data", torch.cuda.device_count(), commands_env(work))
    parts = [Part(key, TITLES[key], budgets[key], lambda deadline, k=key: PARTS[k](ctx, deadline)) for key in only]
    start = time.monotonic()
    try:
        done = run_parts(parts)
    finally:
        if args.keep:
            print(f"[gpu-check] working directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    summary = render_summary(header, done, time.monotonic() - start)
    out.write_text(summary)
    print("\n" + summary)
    print(f"[gpu-check] summary written to {out}")
    return exit_code(done)


def environment_header(torch, started: datetime, argv: list[str] | None) -> dict[str, str]:
    """The summary's first lines: date, GPUs, software, commit and the command."""
    n_gpus = torch.cuda.device_count()
    gpus = ", ".join(
        f"{i}: {torch.cuda.get_device_name(i)} ({torch.cuda.get_device_properties(i).total_memory / 2**30:.0f} GiB)"
        for i in range(n_gpus)
    )
    return {
        "date": f"{started:%Y-%m-%d %H:%M} UTC",
        "GPUs": f"{n_gpus} ({gpus}); CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}",
        "software": f"torch {torch.__version__} (CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}), "
        f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs",
        "commit": _git_commit(),
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
    }


def commands_env(work: Path) -> dict[str, str]:
    """The parts' commands' environment: runs under ``work``, warnings off, bench/ importable (the probes)."""
    pythonpath = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p] + [str(BENCH)]
    return {
        **os.environ,
        "RNNLAB_ROOT": str(work),
        "PYTHONWARNINGS": "ignore",
        "PYTHONPATH": os.pathsep.join(pythonpath),
    }


def _git_commit() -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True, timeout=10
        )
        return done.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
