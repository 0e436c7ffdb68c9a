"""The state of each trial in the stored study: running (heartbeats), lost to an interruption or a kill, told.

A trial is *lost* when its sweep stopped under it (SIGINT/SIGTERM, recorded by the sweep itself; SIGKILL, found
by the next sweep on this host because the worker process is gone, or on another host because its heartbeat
went stale). A lost trial is recorded FAIL with the reason in its ``error`` attribute (``lost``: true), does
not count toward ``n_trials``, and its parameters are queued again once (``retry_of``: its number). A trial
that failed on its own is not retried.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import socket
import subprocess
import threading
import warnings
from datetime import datetime
from typing import Any

from hydra.core.utils import JobReturn, JobStatus

from rnnlab.console import SWEEP, say, warn
from rnnlab.errors import first_line
from rnnlab.sweep.workers import SLURM_JOB_ATTR, WORKER_ATTR, worker_alive, worker_host

log = logging.getLogger(__name__)

ERROR_ATTR = "error"
LOST_ATTR = "lost"
RETRY_ATTR = "retry_of"
# SLURM job states (sacct(1)) of a job the cluster ended, not the trial: it is lost and asked again, as a killed
# local trial is. FAILED and OUT_OF_MEMORY are the trial's own failures. A time limit is usually seen by submitit
# first (SIGUSR2 before it): the job then reports "Job not requeued because: timed-out", a failed trial.
SCHEDULER_ENDED = ("CANCELLED", "TIMEOUT", "PREEMPTED", "NODE_FAIL", "BOOT_FAIL", "DEADLINE")
# submitit's UncompletedJobError: "Job <id> (task: <n>) with path ...\nhas not produced any output (state: <STATE>...)"
_UNCOMPLETED_JOB = re.compile(r"Job (\S+) .*?\(state: ([A-Z_]+)([^)\n]*)\)", re.DOTALL)


def trial_id(storage: Any, study: Any, number: int) -> int:
    """The storage id of trial ``number`` (public storage lookups, not ``Trial._trial_id``)."""
    return storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study.study_name), number)


def lost_numbers(trials: list) -> set[int]:
    """Numbers of the trials lost to an interruption or a kill (marked by rnnlab, or retried by Optuna's rule)."""
    lost = {t.number for t in trials if t.user_attrs.get(LOST_ATTR)}
    lost |= {int(t.user_attrs[RETRY_ATTR]) for t in trials if t.user_attrs.get(RETRY_ATTR) is not None}
    return lost


def counted(trials: list) -> list:
    """The trials that count toward ``n_trials``: started (not WAITING) and not lost."""
    import optuna

    lost = lost_numbers(trials)
    return [t for t in trials if t.state != optuna.trial.TrialState.WAITING and t.number not in lost]


def fail_lost(study: Any, storage: Any, number: int, reason: str) -> bool:
    """Record trial ``number`` FAIL as lost (``reason``) and queue its parameters once more (not for a retry).

    False when it had already finished (another process recorded it first)."""
    import optuna

    tid = trial_id(storage, study, number)
    try:
        storage.set_trial_user_attr(tid, ERROR_ATTR, reason)
        storage.set_trial_user_attr(tid, LOST_ATTR, True)
        if not storage.set_trial_state_values(tid, optuna.trial.TrialState.FAIL):
            return False
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    requeue(study, storage.get_trial(tid))
    return True


def requeue(study: Any, trial: Any) -> None:
    """Queue a lost trial's parameters again, once: a lost retry is not retried (a fresh sample takes its place)."""
    if trial.user_attrs.get(RETRY_ATTR) is not None or not trial.params:
        return
    study.enqueue_trial(dict(trial.params), user_attrs={RETRY_ATTR: trial.number})


def scheduler_loss(result: Any) -> str | None:
    """The lost reason of a trial whose job the cluster ended before it reported (``scancel``, its time limit,
    preemption, a lost node), read from the launcher's error (submitit's ``UncompletedJobError``); else None."""
    if not isinstance(result, BaseException) or type(result).__name__ != "UncompletedJobError":
        return None
    match = _UNCOMPLETED_JOB.search(str(result))
    if match is None or match.group(2) not in SCHEDULER_ENDED:
        return None
    job, state, detail = match.groups()
    return f"lost: its SLURM job {job} ended {state}{detail.rstrip()} before the trial reported"


def retry_stale(study: Any, trial: Any) -> None:
    """Optuna's failed-trial callback for trials whose heartbeat went stale (their sweep on another host died)."""
    requeue(study, trial)


# A sweep claims a trial (its worker attributes) right after asking for it: milliseconds, one storage write. A
# RUNNING trial still unclaimed this long after it started was asked by a sweep killed in between.
UNCLAIMED_GRACE_S = 30.0


def unclaimed(trials: list) -> list:
    """The RUNNING trials that no sweep has claimed (no worker attributes)."""
    import optuna

    return [t for t in trials if t.state == optuna.trial.TrialState.RUNNING and WORKER_ATTR not in t.user_attrs]


def fail_dead_trials(study: Any, storage: Any) -> list[int]:
    """Fail (and queue again) the RUNNING trials of this host whose sweep process is gone, at once, and those
    no sweep claimed within ``UNCLAIMED_GRACE_S``; then the stale ones of other hosts by their heartbeat.
    Returns the numbers failed here."""
    import optuna

    host = socket.gethostname()
    failed = []
    now = datetime.now()  # Optuna's datetime_start: the asking process's local time, naive
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if worker_host(trial.user_attrs) == host and not worker_alive(trial.user_attrs):
            reason = f"lost: its sweep process ({trial.user_attrs.get('worker')}) was killed"
        elif WORKER_ATTR not in trial.user_attrs and (now - trial.datetime_start).total_seconds() > UNCLAIMED_GRACE_S:
            reason = "lost: its sweep process was killed before it claimed the trial"
        else:
            continue
        if fail_lost(study, storage, trial.number, reason):
            failed.append(trial.number)
            cancel_job(trial)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    return failed


def cancel_job(trial: Any) -> None:
    """Cancel the SLURM job still running a lost trial (its result would never be read); say so."""
    job = trial.user_attrs.get(SLURM_JOB_ATTR)
    scancel = shutil.which("scancel")
    if job is None or scancel is None:
        return
    done = subprocess.run([scancel, str(job)], capture_output=True, text=True, timeout=60)
    outcome = "cancelled" if done.returncode == 0 else f"could not cancel ({done.stderr.strip() or done.returncode})"
    say(prefix=SWEEP, message=f"trial {trial.number}'s SLURM job {job} {outcome}: its trial is asked again")


class Heartbeats:
    """Records a heartbeat for every trial this sweep is running, every ``interval`` seconds."""

    def __init__(self, storage: Any, interval: int) -> None:
        self.storage, self.interval = storage, interval
        self.trial_ids: set[int] = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="optuna-heartbeats", daemon=True)
        self.thread.start()

    def add(self, tid: int) -> None:
        self.storage.record_heartbeat(tid)  # at once: a trial without any heartbeat never goes stale
        with self.lock:
            self.trial_ids.add(tid)

    def discard(self, tid: int) -> None:
        with self.lock:
            self.trial_ids.discard(tid)

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            with self.lock:
                running = list(self.trial_ids)
            for tid in running:
                try:
                    self.storage.record_heartbeat(tid)
                except Exception as error:  # a busy database must not kill the sweep; the next beat retries
                    warn(f"heartbeat of trial id {tid} not recorded: {error}")

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


def objective_values(value: Any, n_objectives: int) -> tuple[list[float] | None, str | None]:
    """(values, None) for a job's return value, or (None, why it cannot be the objective values)."""
    many = isinstance(value, (list, tuple)) or (hasattr(value, "__len__") and not isinstance(value, (str, bytes)))
    if n_objectives > 1 and not many:
        return None, f"the job returned {value!r}, not {n_objectives} values (one per direction)"
    items = list(value) if many else [value]
    if len(items) != n_objectives:
        return None, f"the job returned {len(items)} values for {n_objectives} objectives"
    try:
        numbers = [float(v) for v in items]
    except (TypeError, ValueError):
        return None, f"the job returned {value!r}, not a number"
    bad = [v for v in numbers if not math.isfinite(v)]
    if bad:
        return None, f"the job returned {bad[0]} for the optimised metric"
    return numbers, None


def job_outcome(result: Any) -> tuple[Any, BaseException | None]:
    """(return value, None) of a completed job, or (None, the exception it raised or failed with)."""
    if isinstance(result, BaseException):
        return None, result
    if isinstance(result, JobReturn):
        try:
            value = result.return_value  # re-raises the job's exception
        except Exception as error:
            return None, error
        if result.status == JobStatus.COMPLETED:
            return value, None
        return None, RuntimeError(f"job status {result.status}")
    return result, None


def tell(study: Any, trial: Any, result: Any, n_objectives: int) -> tuple[str, list[float] | None, str | None]:
    """Record a job's outcome in its trial: (state name, values, error reason)."""
    import optuna

    TrialState = optuna.trial.TrialState
    value, error = job_outcome(result)
    if error is None:
        values, reason = objective_values(value, n_objectives)
        if values is not None:
            _tell(study, trial, values=values)
            return TrialState.COMPLETE.name, values, None
    elif isinstance(error, optuna.TrialPruned):
        _tell(study, trial, state=TrialState.PRUNED)
        return TrialState.PRUNED.name, None, None
    else:
        reason = first_line(error)
    try:
        trial.set_user_attr(ERROR_ATTR, reason)
    except optuna.exceptions.UpdateFinishedTrialError:  # recorded lost by an interrupted sweep meanwhile
        return TrialState.FAIL.name, None, reason
    _tell(study, trial, state=TrialState.FAIL)
    log.debug(f"trial {trial.number} FAIL: {reason}", exc_info=error)
    return TrialState.FAIL.name, None, reason


class GridExhausted(Exception):
    """A grid or brute-force sampler has tried every point (Optuna asks the study to stop)."""


def _tell(study: Any, trial: Any, **kwargs: Any) -> None:
    import optuna

    try:
        study.tell(trial, skip_if_finished=True, **kwargs)
    except RuntimeError as error:
        # GridSampler/BruteForceSampler call study.stop() once every point is tried, which only works inside
        # optimize(); the trial's state is stored before that (Optuna stores it in a finally).
        if isinstance(study.sampler, (optuna.samplers.GridSampler, optuna.samplers.BruteForceSampler)):
            raise GridExhausted(str(error)) from None
        raise
