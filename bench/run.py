"""Benchmarks entry point (`make bench`, or `python bench/run.py [--quick] [--threads N]`).

Runs every benchmark and prints their markdown tables at the end. Threads: ``torch.set_num_threads``
is set explicitly, by default to the number of CPU cores this process may use
(``os.sched_getaffinity``), so results do not depend on torch's own default or on the environment.
``--quick`` is a smoke run: few repeats, numbers only indicative. On a busy machine, ``--threads 1
--clock cpu`` times CPU time instead of wall time, which other processes do not inflate.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

import cells as cells_bench  # bench/cells.py (this script's folder is on sys.path)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run with few repeats")
    parser.add_argument("--threads", type=int, default=available_cores(), help="torch threads (default: available cores)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per measurement (default: 60, quick: 5)")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall time, or this thread's CPU time (needs --threads 1; not skewed by other processes)",
    )
    args = parser.parse_args(argv)
    if args.clock == "cpu" and args.threads != 1:
        parser.error("--clock cpu measures one thread: use it with --threads 1")
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)
    repeats = args.repeats or (5 if args.quick else 60)
    print(
        f"torch {torch.__version__}, {platform.machine()}, {available_cores()} cores, threads={torch.get_num_threads()}, "
        f"repeats={repeats}, clock={args.clock}, load average {os.getloadavg()[0]:.1f}"
    )

    tables = {}
    print("cells: forward + backward, N=100, T=40, D=1, float32, CPU, median ms ...", flush=True)
    tables["Cells: custom vs built-in, forward + backward (N=100, T=40, D=1, float32, CPU)"] = cells_bench.markdown(
        cells_bench.run(repeats=repeats, warmup=1 if args.quick else 5, clock=clock)
    )

    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} (a busy machine inflates and skews the numbers)")
    for title, table in tables.items():
        print(f"\n### {title}\n\n{table}")


if __name__ == "__main__":
    main()
