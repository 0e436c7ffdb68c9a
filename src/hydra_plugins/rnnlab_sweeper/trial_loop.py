"""The sweep's loop: trials asked from the stored study, launched as Hydra jobs in parallel slots, and told.

Each slot asks for its next trial as soon as its last one ends (completed, pruned or failed). SIGINT/SIGTERM stop
the loop with the running trials recorded as lost (``trial_states``: run again by the next sweep), then end the
command with one ``error:`` line and the signal's exit code.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.plugins.launcher import Launcher
from omegaconf import DictConfig

from hydra_plugins.rnnlab_sweeper import optuna_study, trial_states
from hydra_plugins.rnnlab_sweeper.placement import Placement
from hydra_plugins.rnnlab_sweeper.progress import Progress
from hydra_plugins.rnnlab_sweeper.trial_overrides import TrialOverrides
from rnnlab.errors import first_line

QUIET_LOGGERS = (
    "hydra._internal.core_plugins.basic_launcher",
    "hydra_plugins.hydra_joblib_launcher._core",
    "hydra_plugins.hydra_joblib_launcher.joblib_launcher",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher",  # "#<n> : <overrides>" per trial
    "pytorch_lightning.utilities.rank_zero",
    "lightning_fabric.utilities.seed",
)
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
# How long a trial slot whose job was cut short (its worker gone, the job exited) waits for the sweep's own
# signal handler, before it records the outcome: Ctrl-C reaches the workers and the sweep at once, and the
# handler runs in the main thread a moment later. Past it, the trial failed on its own.
SIGNAL_GRACE_S = 1.0
LOST = "LOST"  # a trial's outcome when the cluster ended its job: recorded FAIL (lost) and asked again

Outcome = tuple[int, str, "str | None"]  # (trial number, state name, error reason) of a trial this sweep ran


@dataclass
class Sweep:
    """One sweep, as set up before any trial runs (the study, its folder, where and how trials run)."""

    config: DictConfig  # the app's composed config
    study: Any
    storage: Any
    url: str
    sweep_dir: Path
    n_trials: int  # the study's total
    placement: Placement
    per_job: list[str]  # every trial's overrides: the fixed ones, devices, the if_null ones
    distributions: dict[str, Any]
    custom: Callable[[DictConfig, Any], None] | None  # hydra.sweeper.custom_search_space
    progress: Progress
    overrides: TrialOverrides
    values: dict[str, Any]  # the trial override placeholders with a value in this sweep (all but ``number``)


class Interrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM reached the sweep (raised where its main thread is; a trial's run record says
    "interrupted")."""


class TrialLoop:
    """Runs a sweep's trials until its study holds ``n_trials`` (or it is interrupted, or too many failed)."""

    def __init__(self, sweep: Sweep, launcher: Launcher, heartbeat_interval: int, max_failure_rate: float) -> None:
        self.sweep, self.launcher, self.max_failure_rate = sweep, launcher, max_failure_rate
        self.heartbeats = trial_states.Heartbeats(sweep.storage, heartbeat_interval)
        self.outcomes: list[Outcome] = []  # of this run
        self.study_lock = threading.Lock()  # parallel slots share the study object
        self.running: dict[int, float] = {}  # numbers of the trials this sweep runs now
        self.stop = threading.Event()  # no more trials: interrupted, grid exhausted
        self.signal: signal.Signals | None = None
        self.signalled = threading.Event()  # set with ``signal``: trial slots wait on it
        self.shield = 0  # > 0 while the main thread is in a section a signal must not cut (``shielded``)
        self.redeliver = False  # the Interrupted raised for ``signal`` was swallowed: raise it again (on_unraisable)
        self.looping = False

    def run(self) -> list[Outcome]:
        """The outcomes of this run's trials; SIGINT/SIGTERM end the command (``SystemExit``)."""
        previous = {sig: signal.signal(sig, self.on_signal) for sig in EXIT_CODES}
        previous_hook, sys.unraisablehook, self.looping = sys.unraisablehook, self.on_unraisable, True
        # Hydra's "Launching 1 jobs locally" + overrides per trial, Lightning's "GPU available" and seeds: the
        # progress lines say what matters (a trial's train.log keeps its own lines).
        quiet = [logging.getLogger(name) for name in QUIET_LOGGERS]
        levels = [logger.level for logger in quiet]
        for logger in quiet:
            logger.setLevel(logging.WARNING)
        try:
            self.run_slots(self.sweep.placement.parallel)
        except (Interrupted, KeyboardInterrupt):
            self.stop.set()
            self.record_interrupted()
            name = signal.Signals(self.signal or signal.SIGINT).name
            print(
                f"error: sweep interrupted by {name}: its running trials are recorded FAIL (lost) and run again "
                "first when you run the same command again",
                file=sys.stderr,
            )
            raise SystemExit(EXIT_CODES.get(self.signal or signal.SIGINT, 130)) from None
        finally:
            for logger, level in zip(quiet, levels):
                logger.setLevel(level)
            self.looping = False
            sys.unraisablehook = previous_hook
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.heartbeats.close()
        return self.outcomes

    def run_slots(self, parallel: int) -> None:
        if parallel == 1:
            self.run_slot(0)  # in this thread: the basic launcher runs the trial in this process
            return
        with ThreadPoolExecutor(parallel, thread_name_prefix="trial-slot") as slots:
            futures = [slots.submit(self.run_slot, slot) for slot in range(parallel)]
            try:
                for future in futures:
                    future.result()
            except Interrupted:
                self.stop.set()
                self.record_interrupted()
                while not all(future.done() for future in futures):
                    _stop_local_workers()  # and any worker the launcher started since
                    wait(futures, timeout=0.5)
                raise

    def run_slot(self, slot: int) -> None:
        # A pruned trial frees its slot at once instead of idling until the slowest trial of a batch is done.
        while (asked := self.next_trial()) is not None:
            outcome = self.run_trial(slot, *asked)
            with self.study_lock:
                self.outcomes.append(outcome)

    def on_signal(self, signum: int, frame: Any) -> None:
        if self.signal is None:
            self.signal = signal.Signals(signum)
            self.signalled.set()
        elif not self.redeliver:
            return  # a second Ctrl-C must not cut the recording short
        self.redeliver = False
        if self.shield == 0:  # else raised as the shielded section ends
            raise Interrupted()

    def on_unraisable(self, unraisable: Any) -> None:
        """``sys.unraisablehook`` while the loop runs. Python swallows an exception raised in a finalizer or a
        callback from C (CI once: a garbage-collection callback of SQLAlchemy's), printing "Exception ignored":
        an Interrupted raised there would be lost, and the sweep would go on until its trial ended. The signal is
        sent to the main thread again a moment later, from another thread (raised in this hook, it would be
        swallowed again; a real signal also wakes a main thread blocked in a sleep or a wait), and its handler
        raises it in the code the finalizer interrupted. Other errors go to Python's hook."""
        if isinstance(unraisable.exc_value, Interrupted) and self.signal is not None:
            self.redeliver = True
            threading.Timer(0.05, self.interrupt_again).start()
        else:
            sys.__unraisablehook__(unraisable)

    def interrupt_again(self) -> None:
        if self.looping and self.redeliver and self.signal is not None:
            signal.pthread_kill(threading.main_thread().ident or 0, self.signal)

    @contextmanager
    def shielded(self):
        """In the main thread: a signal waits until the section ends (a trial is asked and marked as this
        sweep's, or told, as one step), then interrupts."""
        main = threading.current_thread() is threading.main_thread()
        self.shield += main
        try:
            yield
        finally:
            self.shield -= main
        if main and self.shield == 0 and self.signal is not None:
            raise Interrupted()

    def record_interrupted(self) -> None:
        name = signal.Signals(self.signal or signal.SIGINT).name
        with self.study_lock:  # no slot records an outcome meanwhile (its error would replace the lost reason)
            for number in list(self.running):
                trial_states.fail_lost(
                    self.sweep.study, self.sweep.storage, number, f"lost: the sweep was interrupted by {name}"
                )

    def too_many_failures(self) -> bool:
        failed = sum(state == "FAIL" for _, state, _ in self.outcomes)
        return bool(self.outcomes) and failed / len(self.outcomes) > self.max_failure_rate

    def counted(self) -> int:
        """How many trials of the study count toward ``n_trials``."""
        return len(trial_states.counted(self.sweep.study.get_trials(deepcopy=False)))

    def next_trial(self) -> tuple[Any, int] | None:
        """(trial, position) of the next trial to run, asked from the stored study; None once it holds
        ``n_trials`` counted trials (or too many of this run's trials failed, or the sweep is stopping)."""
        sweep = self.sweep
        while True:
            with self.shielded(), self.study_lock:  # one ask (and count) at a time across the slots
                if self.stop.is_set() or self.too_many_failures():
                    return None
                trial_states.fail_dead_trials(sweep.study, sweep.storage)
                done = self.counted()
                if done < sweep.n_trials:
                    return self._ask(), done + 1
                # Done, unless a counted trial is one that a killed sweep asked for but never claimed: it is
                # failed (and asked again) once its grace is over, so wait for that rather than end short.
                if not trial_states.unclaimed(sweep.study.get_trials(deepcopy=False)):
                    return None
            if self.stop.wait(1.0):
                return None

    def _ask(self) -> Any:
        """A new trial of the study, claimed as this sweep's (under ``study_lock``)."""
        import optuna

        from rnnlab.sweep.workers import this_worker

        sweep = self.sweep
        with warnings.catch_warnings():
            # Optuna warns that heartbeats are meant for optimize(); Heartbeats does that job here.
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            trial = sweep.study.ask(sweep.distributions)
        self.running[trial.number] = time.monotonic()
        for key, value in this_worker().items():  # which machine and sweep process: a kill is found by it
            trial.set_user_attr(key, value)
        self.heartbeats.add(trial_states.trial_id(sweep.storage, sweep.study, trial.number))
        if sweep.custom is not None:
            sweep.custom(sweep.config, trial)
        return trial

    def trial_overrides(self, slot: int, trial: Any, run_dir: Path) -> list[str]:
        """Everything trial ``trial`` of slot ``slot`` is launched with."""
        from rnnlab.sweep.results import override_value

        sweep = self.sweep
        return [
            *sweep.per_job,
            *sweep.placement.devices(slot),
            *(f"{key}={override_value(value)}" for key, value in trial.params.items()),
            *sweep.overrides.per_trial(sweep.config, {**sweep.values, "number": trial.number}),
            f"hydra.sweep.dir={override_value(str(sweep.sweep_dir))}",
            f"hydra.sweep.subdir={run_dir.name}",
        ]

    def run_trial(self, slot: int, trial: Any, position: int) -> Outcome:
        """Launch one trial as a job of the configured launcher in parallel slot ``slot``; its outcome."""
        sweep = self.sweep
        run_dir = sweep.sweep_dir / f"trial_{trial.number}"
        trial.set_user_attr("run_dir", str(run_dir))
        gpu = sweep.placement.gpus[slot]
        if gpu is not None:
            trial.set_user_attr("gpu", gpu)  # torch's index among the visible GPUs
        overrides = self.trial_overrides(slot, trial, run_dir)
        sweep.progress.start(trial.number, position, trial.params, trial.user_attrs.get(trial_states.RETRY_ATTR))
        result = self.launch(trial, overrides)
        tid = trial_states.trial_id(sweep.storage, sweep.study, trial.number)
        try:
            state, values, reason, remaining = self.tell(trial, tid, result)
        finally:
            self.heartbeats.discard(tid)
        if state == "FAIL":
            _keep_traceback(run_dir, result)
        text = _outcome_text(sweep.study, trial.number, state, values, reason)
        sweep.progress.end(trial.number, text, values, remaining)
        return trial.number, state, reason

    def launch(self, trial: Any, overrides: list[str]) -> Any:
        """The job's return (or the exception it failed with); ``Interrupted`` when a signal cut it short."""
        try:
            # No validate_batch_is_legal: it composes the job's config once more in this process (~0.3 s a
            # trial); a config that does not compose fails in the launcher just the same, and lands below.
            return self.launcher.launch([overrides], initial_job_idx=trial.number)[0]
        except BaseException as error:  # a composition or launcher failure, or the job cut short by a signal or a kill
            # (Lightning turns Ctrl-C into SystemExit; a worker killed by Ctrl-C breaks the launcher's pool)
            if self.signal is None and threading.current_thread() is not threading.main_thread():
                self.signalled.wait(SIGNAL_GRACE_S)  # a Ctrl-C is the sweep's too: its handler runs in a moment
            if self.signal is not None or isinstance(error, (KeyboardInterrupt, Interrupted)):
                raise Interrupted() from None
            return error if isinstance(error, Exception) else RuntimeError(f"the job exited: {first_line(error)}")

    def tell(self, trial: Any, tid: int, result: Any) -> tuple[str, Any, str | None, int]:
        """Record the job's outcome in the study: (state name, values, error reason, trials still to run)."""
        study = self.sweep.study
        with self.shielded(), self.study_lock:  # the slots' tells (and the sampler's after-trial work) one at a time
            if self.signal is not None:  # the trial is lost, whatever its job said: record_interrupted says so
                raise Interrupted()
            lost = trial_states.scheduler_loss(result)  # the cluster ended its job (scancel, time limit, ...)
            told: tuple[str, list[float] | None, str | None]
            try:
                if lost is not None:
                    trial_states.fail_lost(study, self.sweep.storage, trial.number, lost)  # and asked again, once
                    told = LOST, None, lost
                else:
                    told = trial_states.tell(study, trial, result, len(study.directions))
            except trial_states.GridExhausted:  # this trial is recorded; there is no other point to try
                self.stop.set()
                frozen = self.sweep.storage.get_trial(tid)
                told = frozen.state.name, frozen.values, frozen.user_attrs.get(trial_states.ERROR_ATTR)
            self.running.pop(trial.number, None)
            return (*told, max(0, self.sweep.n_trials - self.counted()))


def _keep_traceback(run_dir: Path, result: Any) -> None:
    """A failed trial's traceback in ``<trial dir>/traceback.txt`` (the console shows its first line)."""
    import traceback

    _, error = trial_states.job_outcome(result)
    if error is not None and error.__traceback__ is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "traceback.txt").write_text("".join(traceback.format_exception(error)))


def _outcome_text(study: Any, number: int, state: str, values: Any, reason: str | None) -> str:
    if state == "PRUNED":
        steps = study.trials[number].intermediate_values
        return f"pruned at epoch {max(steps)}" if steps else "pruned"
    if state == "FAIL":
        return f"failed: {reason}"
    if state == LOST:
        return f"{reason}; it runs again"
    metrics = (study.user_attrs.get(optuna_study.STUDY_ATTR) or {}).get("metrics") or []
    names = metrics if len(metrics) == len(values or ()) else [f"value_{i}" for i in range(len(values or ()))]
    return "done: " + ", ".join(f"{n}={v:.4g}" for n, v in zip(names, values or ()))


def _stop_local_workers() -> None:
    """Stop this process's children (the joblib launcher's workers, running the interrupted trials) with
    SIGTERM, so an interrupted parallel sweep ends at once. Linux (``/proc``); elsewhere they finish their trial."""
    me = os.getpid()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            parent = int(text[text.rindex(")") + 2 :].split()[1])
            if parent == me:
                os.kill(int(stat.parent.name), signal.SIGTERM)
        except (OSError, ValueError):  # gone meanwhile, or not ours to read
            continue
