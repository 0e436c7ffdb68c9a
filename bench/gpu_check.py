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
docs/gpu-check.md describes the parts and the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
CELLS = ("vanilla", "gru", "lstm")
IMPLS = ("custom", "builtin")
EPOCHS = 5  # timed runs
SWEEP = {"trials": 8, "n_jobs": 4, "trials_per_gpu": 4, "epochs": 3}
BENCH_CELLS, BENCH_HIDDEN, BENCH_BATCHES = 3, (32, 128, 512), (100, 1000)  # the bench times all 3 cells
# Seconds per part; 460 in all, within the 8 minutes on one GPU (with the check's own start-up).
BUDGETS = {"tests": 170.0, "runs": 150.0, "sweep": 80.0, "cells": 60.0}
TITLES = {
    "tests": "1. GPU tests (`pytest -m cuda`)",
    "runs": f"2. Timed runs (`src/train.py trainer=gpu`, {EPOCHS} epochs)",
    "sweep": f"3. GPU sweep ({SWEEP['trials']} trials, {SWEEP['n_jobs']} joblib workers)",
    "cells": "4. Cells bench (`bench/run.py --only cells --device cuda`)",
}
TAIL_LINES = 15
# What the parts run on (a CPU smoke run of the plumbing can set them to "cpu"; the check itself never does).
TRAINER, DEVICE = "gpu", "cuda"


# ------------------------------------------------------------------------------------------- no GPU


def no_gpu_line(torch_version: str, environ: Mapping[str, str]) -> str:
    """The one line printed where no CUDA GPU is visible."""
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    shown = "<unset>" if visible is None else (visible or '""')
    return (
        f"error: no CUDA GPU is visible (torch {torch_version}, CUDA_VISIBLE_DEVICES={shown}); make gpu-check needs one"
    )


# ------------------------------------------------------------------------------------------- commands and budgets


class Overrun(Exception):
    """A command ran past its part's budget and was stopped (its whole process group killed)."""

    def __init__(self, command: list[str], seconds: float, stdout: str = "", stderr: str = "") -> None:
        super().__init__(f"stopped after {seconds:.0f} s: {' '.join(command)}")
        self.command, self.seconds, self.stdout, self.stderr = command, seconds, stdout, stderr


def run_command(
    command: list[str], deadline: float, env: Mapping[str, str] | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess:
    """Run ``command`` until ``deadline`` (``time.monotonic()``), capturing its output; past it, kill the
    command's process group (the command and everything it started: joblib workers, DDP ranks) and raise
    ``Overrun``."""
    timeout = deadline - time.monotonic()
    if timeout <= 0:
        raise Overrun(command, 0.0)
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, so a kill reaches its children too
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except BaseException as error:  # the timeout, or Ctrl-C: leave nothing running
        _kill_group(process)
        try:
            stdout, stderr = process.communicate(timeout=5)
        except subprocess.TimeoutExpired:  # a grandchild in a session of its own still holds the pipes
            stdout, stderr = "", ""
        if isinstance(error, subprocess.TimeoutExpired):
            raise Overrun(command, timeout, stdout or "", stderr or "") from None
        raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@dataclass
class Outcome:
    """What a part reports: ``status`` passed | failed | overran | error, a one-line ``headline`` for the
    overview table, a markdown ``body``; ``seconds`` is filled in by ``run_part``."""

    status: str
    headline: str
    body: str = ""
    seconds: float = 0.0


@dataclass
class Part:
    key: str
    title: str
    budget: float
    run: Callable[[float], Outcome]  # called with the part's deadline (time.monotonic())


def run_part(part: Part) -> Outcome:
    """Run one part within its budget; an overrun or an error becomes its outcome (the check goes on)."""
    start = time.monotonic()
    try:
        outcome = part.run(start + part.budget)
    except Overrun as overrun:
        outcome = Outcome(
            "overran",
            f"stopped at its budget of {part.budget:.0f} s",
            f"Stopped: `{' '.join(overrun.command)}` ran past the part's budget of {part.budget:.0f} s.\n\n"
            + tail_block(overrun.stdout + overrun.stderr),
        )
    except Exception as error:
        outcome = Outcome("error", first_line(error), "```\n" + traceback.format_exc()[-3000:] + "```")
    outcome.seconds = time.monotonic() - start
    return outcome


def run_parts(parts: Iterable[Part], report: Callable[[str], None] = print) -> list[tuple[Part, Outcome]]:
    done = []
    for part in parts:
        report(f"[gpu-check] {part.title} (budget {part.budget:.0f} s) ...")
        outcome = run_part(part)
        report(f"[gpu-check]   {outcome.status} in {outcome.seconds:.0f} s: {outcome.headline}")
        done.append((part, outcome))
    return done


def first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def tail_block(text: str, lines: int = TAIL_LINES) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return "```\n" + "\n".join(kept) + "\n```" if kept else "(no output)"


# ------------------------------------------------------------------------------------------- the summary


def render_summary(header: Mapping[str, str], done: list[tuple[Part, Outcome]], total_seconds: float) -> str:
    """The markdown summary: the environment, one overview row per part, then each part's section."""
    lines = ["# rnnlab GPU check", ""]
    lines += [f"- {key}: {value}" for key, value in header.items()]
    lines += [
        f"- total: {total_seconds:.0f} s",
        "",
        "| part | result | seconds | budget s | |",
        "|---|---|---|---|---|",
    ]
    for part, outcome in done:
        lines.append(
            f"| {part.title} | {outcome.status.upper()} | {outcome.seconds:.0f} | {part.budget:.0f} | "
            f"{outcome.headline} |"
        )
    for part, outcome in done:
        lines += [
            "",
            f"## {part.title}",
            "",
            f"**{outcome.status.upper()}** ({outcome.seconds:.0f} s of {part.budget:.0f}): {outcome.headline}",
        ]
        if outcome.body:
            lines += ["", outcome.body.rstrip()]
    return "\n".join(lines) + "\n"


def exit_code(done: list[tuple[Part, Outcome]]) -> int:
    return 0 if all(outcome.status == "passed" for _, outcome in done) else 1


# ------------------------------------------------------------------------------------------- 1. tests


def junit_rows(xml_text: str) -> list[dict]:
    """One dict per test case of a pytest JUnit XML report: ``test``, ``outcome`` (passed | failed | error |
    skipped), ``seconds``, ``note`` (the skip reason or failure message, and any ``record_property`` values)."""
    rows = []
    for case in ET.fromstring(xml_text).iter("testcase"):
        outcome, note = "passed", ""
        for tag in ("failure", "error", "skipped"):
            element = case.find(tag)
            if element is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                note = (element.get("message") or element.text or "").strip().splitlines()[0:1]
                note = note[0] if note else ""
                break
        properties = [f"{p.get('name')}: {p.get('value')}" for p in case.iter("property")]
        module = case.get("classname", "").rsplit(".", 1)[-1]
        rows.append(
            {
                "test": f"{module}::{case.get('name')}" if module else case.get("name"),
                "outcome": outcome,
                "seconds": float(case.get("time") or 0.0),
                "note": "; ".join([note, *properties] if note else properties),
            }
        )
    return rows


def tests_outcome(returncode: int, rows: list[dict], output: str) -> Outcome:
    counts = {k: sum(r["outcome"] == k for r in rows) for k in ("passed", "failed", "error", "skipped")}
    shown = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    table = ["| test | result | s | note |", "|---|---|---|---|"]
    table += [f"| `{r['test']}` | {r['outcome']} | {r['seconds']:.1f} | {r['note'].replace('|', '/')} |" for r in rows]
    body = "\n".join(table)
    if not rows:
        return Outcome("failed", f"no test marked cuda ran (pytest exit code {returncode})", tail_block(output))
    if counts["failed"] or counts["error"] or returncode not in (0,):
        return Outcome("failed", shown or f"pytest exit code {returncode}", body + "\n\n" + tail_block(output))
    return Outcome("passed", shown, body)


def part_tests(ctx: Context, deadline: float) -> Outcome:
    report = ctx.work / "cuda-tests.xml"
    command = [
        ctx.python,
        "-m",
        "pytest",
        "-m",
        "cuda",
        "-v",
        "-p",
        "no:cacheprovider",
        "--timeout=150",
        f"--junitxml={report}",
        "-o",
        "junit_family=xunit1",  # keeps record_property values in the report
    ]
    result = run_command(command, deadline, ctx.env)
    rows = junit_rows(report.read_text()) if report.exists() else []
    return tests_outcome(result.returncode, rows, result.stdout + result.stderr)


# ------------------------------------------------------------------------------------------- 2. timed runs


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


def part_runs(ctx: Context, deadline: float) -> Outcome:
    rows: list[dict] = []
    stopped = None
    for cell in CELLS:
        for impl in IMPLS:
            clock = ctx.work / f"epochs-{cell}-{impl}.json"
            command = [
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
            row = {"cell": cell, "impl": impl, "command": command}
            rows.append(row)
            if stopped:
                row["status"] = "not run (budget spent)"
                continue
            start = time.monotonic()
            try:
                result = run_command(command, deadline, ctx.env)
            except Overrun as overrun:
                row["status"], row["wall"] = "stopped (budget)", time.monotonic() - start
                row["error"] = tail_block(overrun.stdout + overrun.stderr)
                stopped = overrun
                continue
            row["wall"] = time.monotonic() - start
            if result.returncode != 0 or not clock.exists():
                row["status"] = f"failed (exit {result.returncode})"
                row["error"] = tail_block(result.stdout + result.stderr)
                continue
            row["times"] = epoch_times(json.loads(clock.read_text()))
            accuracy = re.search(r"test/acc=([0-9.]+)", result.stdout)
            row["test_acc"] = accuracy.group(1) if accuracy else ""
            row["status"] = "ran"
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


# ------------------------------------------------------------------------------------------- 3. sweep


def sweep_trials(storage: str, study_name: str) -> list[dict]:
    """Each stored trial of the study: number, state, gpu (the ``gpu`` user attribute, or None), start and end
    (datetimes; end None while running), value and params."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_name, storage=storage)
    return [
        {
            "number": t.number,
            "state": t.state.name,
            "gpu": t.user_attrs.get("gpu"),
            "start": t.datetime_start,
            "end": t.datetime_complete,
            "value": t.value,
            "params": t.params,
        }
        for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    ]


def max_overlap(intervals: Iterable[tuple]) -> int:
    """The most intervals (start, end) open at one time; one ending as another starts does not overlap it."""
    intervals = list(intervals)
    points = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = most = 0
    for _, step in points:  # at equal times the end (-1) sorts first
        running += step
        most = max(most, running)
    return most


def sweep_checks(trials: list[dict], n_gpus: int, n_trials: int, n_jobs: int, trials_per_gpu: int) -> list[tuple]:
    """(check, passed, detail) for a GPU sweep's trials: all complete, each recorded a visible GPU, the GPUs used
    are those the sweeper hands out, trials overlapped, never more at once than the workers or a GPU allows."""
    timed = [t for t in trials if t["start"] is not None and t["end"] is not None]
    complete = sum(t["state"] == "COMPLETE" for t in trials)
    gpus = [t["gpu"] for t in trials]
    valid = [g for g in gpus if isinstance(g, int) and 0 <= g < n_gpus]
    slots = min(n_jobs, n_gpus * trials_per_gpu)
    expected = set(range(min(n_gpus, slots)))
    together = max_overlap((t["start"], t["end"]) for t in timed)
    per_gpu = {gpu: max_overlap((t["start"], t["end"]) for t in timed if t["gpu"] == gpu) for gpu in sorted(set(valid))}
    return [
        (f"{n_trials} trials complete", complete == n_trials == len(trials), f"{complete} of {len(trials)} complete"),
        (
            "each trial recorded its GPU (user attr `gpu`, a visible index)",
            bool(trials) and len(valid) == len(trials),
            "gpu per trial: " + ", ".join(f"{t['number']}→{t['gpu']}" for t in trials),
        ),
        (
            f"GPUs used are the sweeper's {slots} slots over {n_gpus} GPU(s)",
            set(valid) == expected,
            f"used {sorted(set(valid))}, expected {sorted(expected)}",
        ),
        ("trials overlapped", together >= 2, f"at most {together} trials ran at once"),
        (f"never more than {n_jobs} trials at once", together <= n_jobs, f"at most {together} at once"),
        (
            f"never more than {trials_per_gpu} trials on one GPU at once",
            all(n <= trials_per_gpu for n in per_gpu.values()),
            ", ".join(f"GPU {g}: {n}" for g, n in per_gpu.items()) or "no GPU recorded",
        ),
    ]


def trials_table(trials: list[dict]) -> str:
    origin = min((t["start"] for t in trials if t["start"] is not None), default=None)
    lines = [
        "| trial | state | gpu | start s | end s | seconds | value | params |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in trials:
        start = (t["start"] - origin).total_seconds() if t["start"] and origin else float("nan")
        end = (t["end"] - origin).total_seconds() if t["end"] and origin else float("nan")
        value = "" if t["value"] is None else f"{t['value']:.4f}"
        params = ", ".join(f"{k.rsplit('.', 1)[-1]}={v:.3g}" for k, v in t["params"].items())
        lines.append(
            f"| {t['number']} | {t['state']} | {t['gpu']} | {start:.1f} | {end:.1f} | {end - start:.1f} | {value} | "
            f"{params} |"
        )
    return "\n".join(lines)


def part_sweep(ctx: Context, deadline: float) -> Outcome:
    storage, study = f"sqlite:///{ctx.work}/gpu-sweep.db", "gpu-check"
    command = [
        ctx.python,
        str(ROOT / "src" / "train.py"),
        "-m",
        "hparams_search=optuna",
        f"trainer={TRAINER}",
        "hydra/launcher=joblib",
        f"hydra.launcher.n_jobs={SWEEP['n_jobs']}",
        f"hydra.sweeper.trials_per_gpu={SWEEP['trials_per_gpu']}",
        f"hydra.sweeper.n_trials={SWEEP['trials']}",
        f"hydra.sweeper.storage={storage}",
        f"hydra.sweeper.study_name={study}",
        "hydra/sweeper/sampler=random",
        "hydra.sweeper.sampler.seed=0",
        "hydra/sweeper/pruner=none",  # every trial runs its whole budget: overlap is what is measured
        f"trainer.max_epochs={SWEEP['epochs']}",
        f"paths.data_dir={ctx.data_dir}",
    ]
    shown = "`" + " ".join(command[1:]).replace(str(ROOT) + "/", "").replace(str(ctx.work), "<tmp>") + "`"
    overrun, result = None, None
    try:
        result = run_command(command, deadline, ctx.env)
    except Overrun as stopped:
        overrun = stopped
    try:
        trials = sweep_trials(storage, study)
    except Exception as error:  # no study: the sweep failed before creating it
        output = (overrun.stdout + overrun.stderr) if overrun else (result.stdout + result.stderr)
        status = "overran" if overrun else "failed"
        return Outcome(status, f"no trials stored ({first_line(error)})", shown + "\n\n" + tail_block(output))
    checks = sweep_checks(trials, ctx.n_gpus, SWEEP["trials"], SWEEP["n_jobs"], SWEEP["trials_per_gpu"])
    body = "\n".join(
        [
            f"Command: {shown}",
            "",
            *(f"- [{'x' if ok else ' '}] {name}: {detail}" for name, ok, detail in checks),
            "",
            "Start and end: seconds from the first trial's start (Optuna's datetime_start / datetime_complete: "
            "asked to told).",
            "",
            trials_table(trials),
        ]
    )
    failed = [name for name, ok, _ in checks if not ok]
    together = max_overlap((t["start"], t["end"]) for t in trials if t["start"] and t["end"])
    summary = f"{sum(t['state'] == 'COMPLETE' for t in trials)} trials complete, up to {together} at once"
    if overrun:
        return Outcome("overran", f"stopped at its budget; {summary}", body + "\n\n" + tail_block(overrun.stderr))
    if result.returncode != 0 or failed:
        reason = f"sweep exit code {result.returncode}" if result.returncode else "failed: " + "; ".join(failed)
        return Outcome("failed", f"{reason}; {summary}", body + "\n\n" + tail_block(result.stdout + result.stderr))
    return Outcome("passed", summary, body)


# ------------------------------------------------------------------------------------------- 4. cells bench

_TITLE = re.compile(r"^### Cells: .*\(N=(\d+),")
_ROW = re.compile(r"^\| (\w+) \| (\d+) \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+)× \|$")


def cells_rows(output: str) -> list[dict]:
    """The rows of the cells tables ``bench/run.py`` prints: cell, N, H, custom ms, builtin ms, ratio."""
    rows, batch = [], None
    for line in output.splitlines():
        title = _TITLE.match(line)
        if title:
            batch = int(title.group(1))
        row = _ROW.match(line.strip())
        if row and batch is not None:
            cell, hidden, custom, builtin, ratio = row.groups()
            rows.append(
                {
                    "cell": cell,
                    "N": batch,
                    "H": int(hidden),
                    "custom": float(custom),
                    "builtin": float(builtin),
                    "ratio": float(ratio),
                }
            )
    return rows


def cells_verdict(rows: list[dict]) -> str:
    """How the custom cells compare with cuDNN, in numbers (never hidden: it heads the part's row)."""
    if not rows:
        return "no rows"
    ratios = [r["ratio"] for r in rows]
    worst = max(rows, key=lambda r: r["ratio"])
    best = min(rows, key=lambda r: r["ratio"])
    slower = sum(x > 1.0 for x in ratios)
    median = statistics.median(ratios)
    where = f"{worst['cell']} H={worst['H']} N={worst['N']}"
    if median > 2.0:
        grade = "far slower than cuDNN"
    elif slower:
        grade = "slower than cuDNN"
    else:
        grade = "not slower than cuDNN"
    return (
        f"custom cells {grade}: median {median:.1f}× cuDNN's time, from {best['ratio']:.2f}× to "
        f"{worst['ratio']:.1f}× ({where}); slower in {slower} of {len(rows)} settings"
    )


def part_cells(ctx: Context, deadline: float) -> Outcome:
    command = [
        ctx.python,
        str(BENCH / "run.py"),
        "--only",
        "cells",
        "--device",
        DEVICE,
        "--hidden-sizes",
        ",".join(map(str, BENCH_HIDDEN)),
        "--batch-sizes",
        ",".join(map(str, BENCH_BATCHES)),
        "--repeats",
        "15",
        "--quick",  # 1 warm-up repeat
    ]
    result = run_command(command, deadline, ctx.env)
    rows = cells_rows(result.stdout)
    tables = result.stdout[result.stdout.find("### Cells") :] if "### Cells" in result.stdout else ""
    shown = "`" + " ".join(command[1:]).replace(str(ROOT) + "/", "") + "`"
    body = f"Command: {shown} (median of 15 interleaved repeats after a warm-up; T=40, D=1, float32)\n\n"
    body += tables.replace("### ", "#### ").strip()
    expected = BENCH_CELLS * len(BENCH_HIDDEN) * len(BENCH_BATCHES)
    if result.returncode != 0 or len(rows) != expected:
        note = f"bench exit code {result.returncode}, {len(rows)} of {expected} rows"
        return Outcome("failed", note, body + "\n\n" + tail_block(result.stdout + result.stderr))
    return Outcome("passed", cells_verdict(rows), body)


# ------------------------------------------------------------------------------------------- main


@dataclass
class Context:
    python: str
    work: Path
    data_dir: Path
    n_gpus: int
    env: dict = field(default_factory=dict)


PARTS: dict[str, Callable[[Context, float], Outcome]] = {
    "tests": part_tests,
    "runs": part_runs,
    "sweep": part_sweep,
    "cells": part_cells,
}


def _budget(text: str) -> tuple[str, float]:
    name, _, seconds = text.partition("=")
    if name not in BUDGETS or not seconds:
        raise argparse.ArgumentTypeError(f"{text!r}: give <part>=<seconds>, part one of {', '.join(BUDGETS)}")
    return name, float(seconds)


def main(argv: list[str] | None = None) -> int:
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

    import torch  # the only way to know whether CUDA sees a GPU

    if not torch.cuda.is_available() or torch.cuda.device_count() == 0:
        print(no_gpu_line(torch.__version__, os.environ), file=sys.stderr)
        return 1

    started = datetime.now(timezone.utc)
    out = args.out or Path.cwd() / f"gpu-check-{started:%Y%m%d-%H%M%S}.md"
    budgets = {**BUDGETS, **dict(args.budget)}
    n_gpus = torch.cuda.device_count()
    gpus = ", ".join(
        f"{i}: {torch.cuda.get_device_name(i)} ({torch.cuda.get_device_properties(i).total_memory / 2**30:.0f} GiB)"
        for i in range(n_gpus)
    )
    header = {
        "date": f"{started:%Y-%m-%d %H:%M} UTC",
        "GPUs": f"{n_gpus} ({gpus}); CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}",
        "software": f"torch {torch.__version__} (CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}), "
        f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs",
        "commit": _git_commit(),
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
    }
    work = Path(tempfile.mkdtemp(prefix="rnnlab-gpu-check-"))
    pythonpath = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p] + [str(BENCH)]
    env = {
        **os.environ,
        "RNNLAB_ROOT": str(work),
        "PYTHONWARNINGS": "ignore",
        "PYTHONPATH": os.pathsep.join(pythonpath),
    }
    ctx = Context(sys.executable, work, work / "data", n_gpus, env)
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
