"""Running a study: one sweep per cell (``src/train.py -m hparams_search=optuna``), then the confirm runs
(``src/train.py``, ``study.jobs`` at a time), then the report; interrupted, the same command continues.

Every sweep and run is a child process running the command a user would type, started in its own
process group: Ctrl-C reaches the study alone, which hands exactly one SIGINT to each running child and
waits for it to stop; a child's whole group is killed when the study is killed (``guard.py``), so no
orphan keeps training. Children write their output to ``logs/<phase>.log`` in the study directory; the study prints
one line per trial and per run.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rnnlab import console
from rnnlab.errors import EXIT_CODES, CommandError, ConfigError, interrupting_signal
from rnnlab.runs.signals import interruptible
from rnnlab.runs.store import read_record
from rnnlab.study.plan import Plan
from rnnlab.sweep.results import param_text

TRAIN_PY = Path(__file__).resolve().parents[2] / "train.py"  # src/train.py beside the package
GUARD = Path(__file__).resolve().with_name("guard.py")
STOP_TIMEOUT_S = 60  # how long an interrupted child may take to stop before it is killed
TRIAL_LINE = re.compile(r"trial (\d+) (COMPLETE|PRUNED|FAIL)\b.*")


class StudyInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) while the study ran; its children have stopped."""


def say(message: str) -> None:
    console.say(f"study: {message}")


# ---------------------------------------------------------------------------------------- children


class Children:
    """The running child processes; ``stop`` interrupts them all (one SIGINT per process group).

    Each child runs under ``guard.py`` in a new session: its own process group, which the guard kills
    when this process is gone (killed with SIGKILL too), so no sweep or joblib worker trains on alone.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: set[subprocess.Popen] = set()
        self.stopping = threading.Event()
        # The guards read the first end; this process holds the second until it ends (never writes).
        self.alive_read, self._alive_write = os.pipe()

    def run(self, command: list[str], log_path: Path, on_line=None) -> tuple[int, list[str]]:
        """Run ``command`` to its end; (exit code, its last output lines). Output goes to ``log_path``."""
        if self.stopping.is_set():
            raise StudyInterrupted()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        tail: list[str] = []
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(f"$ {' '.join(command)}\n")
            log.flush()
            with self.lock:
                process = subprocess.Popen(
                    [sys.executable, str(GUARD), str(self.alive_read), "--", *command],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    text=True,
                    errors="replace",
                    start_new_session=True,
                    pass_fds=(self.alive_read,),
                )
                self.running.add(process)
            assert process.stdout is not None  # stdout=PIPE
            try:
                for line in process.stdout:
                    log.write(line)
                    tail = [*tail[-19:], line.rstrip("\n")]
                    if on_line is not None:
                        on_line(line.rstrip("\n"))
                code = process.wait()
            except KeyboardInterrupt:  # in the main thread: this child and every other one stop first
                self.stop()
                raise
            finally:
                with self.lock:
                    self.running.discard(process)
        if self.stopping.is_set():
            raise StudyInterrupted()
        return code, tail

    def stop(self) -> None:
        """Interrupt every running child (SIGINT to its group), wait; kill what is still there after a while."""
        self.stopping.set()
        with self.lock:
            processes = list(self.running)
        for process in processes:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGINT)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for process in processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _failure(what: str, code: int, tail: list[str], log_path: Path) -> CommandError:
    lines = [line for line in tail if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    reason = (errors or lines or ["no output"])[-1]
    reason = reason[len("error:") :].strip() if reason.startswith("error:") else reason.strip()
    return CommandError(f"{what} failed (exit code {code}): {reason}; log: {log_path}")


# ---------------------------------------------------------------------------------------- tune


@dataclass
class Tuned:
    cell: str
    study_name: str
    params: dict[str, Any]
    value: float
    trial: int
    seconds: float | None  # wall time of this command's sweep (None: done earlier)


def finished_trials(plan: Plan, cell: str) -> int:
    """Trials of the cell's study in a final state (COMPLETE, PRUNED, FAIL); 0 before its first sweep."""
    if not (plan.dir / "optuna.db").is_file():
        return 0
    import optuna

    from rnnlab.sweep.storage import open_storage

    storage = open_storage(plan.storage)
    try:
        study = optuna.load_study(study_name=plan.study_name(cell), storage=storage)
    except KeyError:
        return 0
    finally:
        storage.remove_session()
    return sum(trial.state.is_finished() for trial in study.get_trials(deepcopy=False))


def read_best(plan: Plan, cell: str) -> dict[str, Any] | None:
    path = plan.tune_dir(cell) / "best.yaml"
    if not path.is_file():
        return None
    return yaml.safe_load(path.read_text())


def tune(plan: Plan, cell: str, children: Children) -> Tuned:
    """The cell's sweep (continuing its study), unless the study already holds ``study.trials`` finished trials."""
    done = finished_trials(plan, cell)
    seconds = None
    if done < plan.trials or read_best(plan, cell) is None:
        say(
            f"tuning {cell}: {plan.trials} trials (≤ {plan.trial_epochs} epochs, {plan.jobs} at a time), "
            f"{done} finished earlier"
        )
        log_path = plan.log_path(f"tune-{cell}")
        started = time.monotonic()

        def show(line: str) -> None:
            found = TRIAL_LINE.search(line)
            if found:
                say(f"{cell} {found.group(0)}")

        code, tail = children.run(plan.sweep_command(cell, TRAIN_PY), log_path, show)
        if code != 0:
            raise _failure(f"tuning {cell}", code, tail, log_path)
        seconds = time.monotonic() - started
    best = read_best(plan, cell)
    if best is None:
        raise CommandError(
            f"no trial of {cell} completed in {plan.tune_dir(cell)}; allowed: more study.trials, "
            "more study.trial_epochs or another search space (study.params)"
        )
    tuned = Tuned(cell, plan.study_name(cell), dict(best["params"]), float(best["value"]), int(best["trial"]), seconds)
    shown = ", ".join(f"{k}={param_text(v)}" for k, v in tuned.params.items())
    timing = f" in {seconds:.0f} s" if seconds is not None else " (done earlier)"
    say(f"tuned {cell}{timing}: trial {tuned.trial} {plan.metric}={tuned.value:.4f} {shown}")
    return tuned


# ---------------------------------------------------------------------------------------- confirm


@dataclass
class Confirm:
    cell: str
    seed: int
    dir: Path
    command: list[str]


def confirm_jobs(plan: Plan, tuned: dict[str, Tuned]) -> list[Confirm]:
    return [
        Confirm(cell, seed, plan.confirm_dir(cell, tuned[cell].params) / f"seed{seed}", [])
        for cell in plan.cells
        for seed in range(plan.seeds)
    ]


def finished(run_dir: Path) -> dict[str, Any] | None:
    """The run's record if it completed and was tested (a ``test/*`` metric), else None."""
    try:
        record = read_record(run_dir)
    except FileNotFoundError:
        return None
    tested = any(
        name.startswith("test/") and value is not None for name, value in (record.get("metrics") or {}).items()
    )
    return record if record.get("status") == "completed" and tested else None


def _clear_unfinished(job: Confirm) -> None:
    """Remove what an interrupted, failed or killed run left in the job's fixed directory."""
    if not job.dir.exists():
        return
    with contextlib.suppress(FileNotFoundError):
        record = read_record(job.dir)
        if record.get("status") == "running":
            raise CommandError(
                f"{job.dir} holds a run that is still running (pid {record.get('pid')}); "
                "allowed: wait for it, or stop it"
            )
    shutil.rmtree(job.dir)


def confirm(plan: Plan, tuned: dict[str, Tuned], children: Children) -> list[Confirm]:
    """Every cell's best retrained with each seed; finished runs (found by their records) are not run again."""
    jobs = confirm_jobs(plan, tuned)
    todo = []
    for job in jobs:
        record = finished(job.dir)
        if record is not None:
            say(f"{job.cell} seed {job.seed}: finished earlier ({_metrics(record)}), {job.dir}")
            continue
        job.command = plan.confirm_command(job.cell, tuned[job.cell].params, job.seed, TRAIN_PY)
        todo.append(job)
    if not todo:
        return jobs
    say(f"confirming: {len(todo)} runs of {plan.epochs} epochs, {plan.jobs} at a time ({len(jobs) - len(todo)} done)")
    errors: list[CommandError] = []

    def run(job: Confirm) -> None:
        if errors or children.stopping.is_set():
            return
        _clear_unfinished(job)
        log_path = plan.log_path(f"confirm-{job.dir.parent.name}-seed{job.seed}")
        started = time.monotonic()
        code, tail = children.run(job.command, log_path)
        record = finished(job.dir)
        if code != 0 or record is None:
            errors.append(_failure(f"confirm run {job.cell} seed {job.seed}", code, tail, log_path))
            return
        say(confirm_line(job.cell, job.seed, record, time.monotonic() - started))

    pool = ThreadPoolExecutor(plan.jobs, thread_name_prefix="confirm")
    try:
        for future in [pool.submit(run, job) for job in todo]:
            future.result()
    except BaseException:  # Ctrl-C while waiting: stop the running children before the threads are joined
        children.stop()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if errors:
        raise errors[0]
    return jobs


def confirm_line(cell: str, seed: int, record: dict[str, Any], wall: float) -> str:
    """A finished confirm run: its test metrics and its run time as the report gives it (``time per run``: the
    record's ``duration_s``), then the command's wall time, which adds Python's and torch's start-up."""
    ran = record.get("duration_s")
    run_time = f"{ran:.1f} s" if isinstance(ran, (int, float)) else "–"
    took = f"run time {run_time} (the report's time per run), {wall:.0f} s with start-up"
    return f"{cell} seed {seed}: {_metrics(record)}; {took}"


def _metrics(record: dict[str, Any]) -> str:
    metrics = record.get("metrics") or {}
    return " ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()) if k.startswith("test/") and v is not None)


# ---------------------------------------------------------------------------------------- the study


def matched_caps(plan: Plan, cfg) -> dict[str, int]:
    """``study.match=params``: per cell the largest hidden size whose model stays under the parameter ceiling
    (``study.max_params``, default: the smallest cell's count at the top of the hidden-size range)."""
    from hydra.utils import instantiate

    from rnnlab.app.compare import count_parameters
    from rnnlab.study.plan import hidden_range

    task = instantiate(cfg.data).task
    keys = ("impl", "num_layers", "dropout", "bidirectional", "readout")
    base = {key: cfg.model[key] for key in keys}
    low, high = hidden_range({**plan.default_space, **plan.space}["model.hidden_size"])

    def count(cell: str, hidden: int) -> int:
        return count_parameters(task, {**base, "cell": cell}, hidden)

    ceiling = plan.max_params or min(count(cell, high) for cell in plan.cells)
    caps = {}
    for cell in plan.cells:
        if count(cell, low) > ceiling:
            raise ConfigError(
                f"study.max_params={ceiling} is not allowed for {cell}: it has {count(cell, low):,} parameters at the "
                f"smallest hidden size searched ({low}); allowed: a larger ceiling or smaller hidden sizes"
            )
        lo, hi = low, high  # the largest h with count(h) <= ceiling (count grows with h)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if count(cell, mid) <= ceiling else (lo, mid - 1)
        caps[cell] = lo
    return caps


def run_study(cfg, plan: Plan) -> tuple[dict[str, Tuned], list[Confirm]]:
    """Tune, then confirm; what was tuned and the confirm runs. Ctrl-C stops the children and raises
    StudyInterrupted."""
    started = time.monotonic()
    say(
        f"{plan.name}: {', '.join(plan.cells)} on {plan.task}; per cell {plan.trials} trials of ≤ {plan.trial_epochs} "
        f"epochs, then {plan.seeds} seeds × {plan.epochs} epochs; {plan.dir}"
    )
    children = Children()
    with interruptible():  # SIGTERM stops the children as Ctrl-C does
        try:
            if plan.match == "params":
                plan.hidden_caps = matched_caps(plan, cfg)
                say(
                    "hidden sizes under one parameter ceiling: "
                    + ", ".join(f"{c} ≤ {h}" for c, h in plan.hidden_caps.items())
                )
            plan.save_settings()
            tuned = {cell: tune(plan, cell, children) for cell in plan.cells}
            jobs = confirm(plan, tuned, children)
        except KeyboardInterrupt as error:
            children.stop()
            raise StudyInterrupted(interrupting_signal(error)) from None
    say(f"tuned and confirmed in {time.monotonic() - started:.0f} s")
    return tuned, jobs


def interrupted_message(plan_dir: Path) -> str:
    return f"interrupted: rerun the same command to continue (finished trials and runs are kept in {plan_dir})"


def exit_interrupted(plan_dir: Path, error: KeyboardInterrupt) -> None:
    """One line on stderr, exit code 130 for SIGINT, 143 for SIGTERM (as a shell reports a command stopped
    by the signal)."""
    print(interrupted_message(plan_dir), file=sys.stderr, flush=True)
    name = error.args[0] if isinstance(error, StudyInterrupted) and error.args else interrupting_signal(error)
    raise SystemExit(EXIT_CODES.get(name or "SIGINT", 130))
