"""Nothing lost: a trial cut short by Ctrl-C, SIGTERM or SIGKILL is recorded FAIL with its reason, does not count
toward ``n_trials``, and runs again (once) when the study is continued; a killed sweep's trials take no cores."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from fixtures.sweep_runs import SPHERE, run_app, start_app
from helpers import ROOT
from inprocess import run_main
from rnnlab import budget

FIXTURES = Path(__file__).parent / "fixtures"


def wait_for(condition, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def running(storage: str, name: str, marked: bool = False) -> bool:
    """Whether the study has a RUNNING trial (``marked``: one its sweep has marked with its worker process)."""
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except Exception:  # the sweep is still creating the storage or the study
        return False
    return any(t.state == TrialState.RUNNING and (not marked or "worker" in t.user_attrs) for t in study.trials)


def by_number(storage: str, name: str) -> list:
    return sorted(optuna.load_study(study_name=name, storage=storage).trials, key=lambda t: t.number)


SPHERE_ARGS = ["-m", "hydra.sweeper.n_trials=2", "hydra.sweeper.sampler.seed=1"]


@pytest.mark.slow
def test_ctrl_c_mid_trial_records_it_lost_and_the_rerun_runs_it_again(tmp_path, data_dir):
    # Ctrl-C reaches the whole foreground process group, as from a terminal, while the trial is inside
    # Lightning's fit: held there by a test callback (so a fast machine cannot finish the trial first).
    args = [
        "-m", "hparams_search=optuna", *budget.overrides(limit_val_batches=1), f"paths.data_dir={data_dir}",
        "hydra.sweeper.n_trials=1",
        "+callbacks.pause._target_=pausing.PauseInFit",
    ]  # fmt: skip
    env = {
        **os.environ, "RNNLAB_ROOT": str(tmp_path), "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(FIXTURES),
    }  # fmt: skip
    paused = tmp_path / "paused"
    command = [sys.executable, str(ROOT / "src" / "train.py"), *args]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**env, "RNNLAB_TEST_PAUSE": str(paused)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for(paused.exists, process)
        os.killpg(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: sweep interrupted by SIGINT") and "run the same command again" in last
    storage = f"sqlite:///{tmp_path}/multirun/optuna.db"
    lost, queued = by_number(storage, "mnist1d-lstm")
    assert queued.state == TrialState.WAITING and queued.user_attrs["retry_of"] == 0
    assert lost.state == TrialState.FAIL and lost.user_attrs["error"] == "lost: the sweep was interrupted by SIGINT"

    rerun = run_main(command[1:], env=env, cwd=str(ROOT))  # in this process: no signal to send it
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    trials = by_number(storage, "mnist1d-lstm")
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]  # n_trials=1 result, nothing RUNNING
    assert trials[1].params == lost.params and trials[1].user_attrs["retry_of"] == 0
    assert "it runs trial 0 again (that one was lost)" in rerun.stdout


def test_sigterm_records_the_running_trial_lost_and_queues_it_once(tmp_path):
    process = start_app(SPHERE, *SPHERE_ARGS, cwd=tmp_path, SPHERE_PAUSE="60")
    storage = f"sqlite:///{tmp_path}/multirun/optuna.db"
    try:
        wait_for(lambda: running(storage, "sphere"), process)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)  # to the sweep's process only, as `kill` or a scheduler sends it
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 143 and time.monotonic() - started < 20, err[-3000:]
    assert err.strip().splitlines()[-1].startswith("error: sweep interrupted by SIGTERM")
    trials = by_number(storage, "sphere")
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]  # queued again, with its params
    assert trials[0].user_attrs["error"] == "lost: the sweep was interrupted by SIGTERM"
    assert trials[1].user_attrs["retry_of"] == 0


def test_a_sigterm_python_swallows_in_a_finalizer_still_ends_the_sweep_at_once(tmp_path):
    # CI once: the handler ran inside a garbage-collection callback of SQLAlchemy's, Python printed "Exception
    # ignored" and dropped the interruption, and the sweep went on with its 60-second trial.
    started = time.monotonic()
    result = run_app(SPHERE, *SPHERE_ARGS, "sigterm_in_finalizer=true", cwd=tmp_path, timeout=90, SPHERE_PAUSE="60")
    assert result.returncode == 143 and time.monotonic() - started < 45, result.stderr[-3000:]  # not the 60 s
    assert result.stderr.strip().splitlines() == [result.stderr.strip().splitlines()[-1]]  # nothing ignored
    assert result.stderr.strip().startswith("error: sweep interrupted by SIGTERM")
    storage = f"sqlite:///{tmp_path}/multirun/optuna.db"
    assert [t.state for t in by_number(storage, "sphere")] == [TrialState.FAIL, TrialState.WAITING]


def test_after_sigkill_the_next_sweep_fails_the_dead_trial_at_once_and_ends_with_n_trials_results(tmp_path):
    process = start_app(SPHERE, *SPHERE_ARGS, cwd=tmp_path, SPHERE_PAUSE="60")
    storage = f"sqlite:///{tmp_path}/multirun/optuna.db"
    try:
        wait_for(lambda: running(storage, "sphere", marked=True), process)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
    finally:
        process.kill()
    assert [t.state for t in by_number(storage, "sphere")] == [TrialState.RUNNING]

    started = time.monotonic()
    rerun = run_app(SPHERE, *SPHERE_ARGS, cwd=tmp_path)  # at once: no waiting for a heartbeat to go stale
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert time.monotonic() - started < 25
    trials = by_number(storage, "sphere")
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert (
        trials[0].user_attrs["error"].startswith("lost: its sweep process")
        and "was killed" in trials[0].user_attrs["error"]
    )
    assert trials[1].params == trials[0].params and trials[1].user_attrs["retry_of"] == 0
    assert "2 COMPLETE, 1 FAIL" in rerun.stdout


def test_a_trial_that_fails_on_its_own_is_not_run_again(tmp_path):
    result = run_app(SPHERE, *SPHERE_ARGS, "error=true", "hydra.sweeper.n_trials=1", cwd=tmp_path)
    assert result.returncode == 1 and "RuntimeError: cfg.error is true" in result.stderr
    (trial,) = by_number(f"sqlite:///{tmp_path}/multirun/optuna.db", "sphere")
    assert trial.state == TrialState.FAIL and "lost" not in trial.user_attrs


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_core_sharing_counts_only_live_trials_of_this_host():
    from rnnlab.sweep.cores import running_on_host
    from rnnlab.sweep.workers import this_worker

    study = optuna.create_study()
    host = socket.gethostname()
    for attrs in [this_worker(), {"worker": f"{host}:{dead_pid()}"}, {"worker": "elsewhere:1"}]:
        trial = study.ask()
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
    assert running_on_host(study, host) == 1  # the killed sweep's trial takes no core
    assert running_on_host(study, "elsewhere") == 1  # another host's: its heartbeat decides


def test_trials_of_other_hosts_keep_the_heartbeat_rule(tmp_path):
    from hydra_plugins.rnnlab_sweeper import trial_states
    from rnnlab.sweep.storage import open_storage

    storage = open_storage(f"sqlite:///{Path(tmp_path)}/optuna.db", 1, 2, stale_trial_callback=trial_states.retry_stale)
    study = optuna.create_study(storage=storage, study_name="s")
    stale, fresh = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), study.ask()
    for trial in (stale, fresh):
        trial.set_user_attr("worker", "elsewhere:1")
    for number in (stale.number, fresh.number):
        storage.record_heartbeat(trial_states.trial_id(storage, study, number))
    assert trial_states.fail_dead_trials(study, storage) == []  # alive by their heartbeats
    time.sleep(3.2)  # SQLite's clock has whole seconds
    storage.record_heartbeat(trial_states.trial_id(storage, study, fresh.number))
    trial_states.fail_dead_trials(study, storage)
    states = [t.state for t in sorted(study.trials, key=lambda t: t.number)]
    assert states == [TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING]
    assert study.trials[2].user_attrs["retry_of"] == stale.number


def test_sigterm_stops_a_parallel_sweep_at_once_with_every_running_trial_lost(tmp_path):
    args = ["-m", "hydra/launcher=joblib", "hydra.sweeper.n_jobs=2", "hydra.sweeper.n_trials=4"]
    process = start_app(SPHERE, *args, cwd=tmp_path, SPHERE_PAUSE="60")
    storage = f"sqlite:///{tmp_path}/multirun/optuna.db"

    def both_running() -> bool:
        try:
            trials = optuna.load_study(study_name="sphere", storage=storage).trials
        except Exception:
            return False
        return sum(t.state == TrialState.RUNNING and "worker" in t.user_attrs for t in trials) == 2

    try:
        wait_for(both_running, process)
        time.sleep(1)  # the joblib workers are in the trials
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=40)
    finally:
        process.kill()
    assert process.returncode == 143 and time.monotonic() - started < 20, err[-3000:]  # not the trials' 60 s
    trials = by_number(storage, "sphere")
    assert [t.state for t in trials] == [TrialState.FAIL] * 2 + [TrialState.WAITING] * 2
    assert {t.user_attrs["retry_of"] for t in trials[2:]} == {0, 1}


def test_a_trial_job_of_a_trial_already_recorded_trains_nothing_and_notes_its_slurm_job(tmp_path, monkeypatch):
    # A job that starts after its sweep recorded its trial lost (a pending SLURM job of a killed sweep) stops in
    # one line before training; a running trial's job notes its SLURM job on the trial, for a rerun to cancel.
    from rnnlab.errors import CommandError
    from rnnlab.sweep.trial import attach_trial

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="s", storage=url)
    lost, running = study.ask(), study.ask()
    lost.set_user_attr("error", "lost: its sweep process (vm:1) was killed")
    study.tell(lost, state=TrialState.FAIL)
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    for name in ("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(CommandError) as refused:
        attach_trial(url, "s", lost.number)
    assert str(refused.value) == (
        "trial 0 of study 's' is already FAIL (lost: its sweep process (vm:1) was killed); a trial job trains only "
        "a running trial"
    )
    attach_trial(url, "s", running.number)
    assert optuna.load_study(study_name="s", storage=url).trials[1].user_attrs == {"slurm_job_id": "4242"}
    # (tests/cluster/test_slurm_sweep.py: a rerun cancels such a job on a real cluster)


@pytest.mark.slow
def test_a_trial_a_killed_sweep_asked_for_but_never_claimed_is_run_again_after_its_grace(tmp_path):
    # kill -9 between Optuna's ask and the sweep's claim (its worker attributes, one write later) leaves a RUNNING
    # trial that names no sweep: once its grace is over it is lost and asked again; the sweep waits for that
    # instead of ending with a trial RUNNING for ever and one result short.
    from datetime import datetime, timedelta

    from hydra_plugins.rnnlab_sweeper.trial_states import UNCLAIMED_GRACE_S

    first = run_app(SPHERE, "-m", "hydra.sweeper.n_trials=1", "hydra.sweeper.sampler.seed=1", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    storage = f"sqlite:///{tmp_path}/multirun/optuna.db"
    study = optuna.load_study(study_name="sphere", storage=storage)
    done = study.trials[0]
    orphan = optuna.trial.create_trial(
        state=TrialState.RUNNING, params={"x": 2.0, "y": 5}, distributions=done.distributions
    )
    # 8 s of grace left: usually after the rerun's own new trial (the sweep then waits), later on a slow machine
    orphan.datetime_start = datetime.now() - timedelta(seconds=UNCLAIMED_GRACE_S - 8)
    study.add_trial(orphan)

    rerun = run_app(SPHERE, "-m", "hydra.sweeper.n_trials=3", "hydra.sweeper.sampler.seed=1", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    trials = by_number(storage, "sphere")
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert trials[1].user_attrs["error"] == "lost: its sweep process was killed before it claimed the trial"
    (retry,) = [t for t in trials if t.user_attrs.get("retry_of") == 1]
    assert retry.params == {"x": 2.0, "y": 5}
    assert "3 COMPLETE, 1 FAIL" in rerun.stdout
