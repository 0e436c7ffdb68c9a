"""Sweeps whose trials are SLURM jobs (hydra/launcher=submitit_slurm) on one PostgreSQL study, on the real
throwaway cluster of conftest.py: the results as on one machine, every run's record naming its job, and a trial
whose job is cancelled mid-trial recorded lost and run again."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest

from helpers import ROOT, TINY, cli_env, read_scalars

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

HERE = Path(__file__).parent
PARALLEL = 2  # the node's 2 CPUs: one trial job on each
STUDY = "mnist1d-lstm"  # the default study name (not given: the sweeper names it after the launcher was made)


def fresh_database(cluster: dict[str, str]) -> str:
    """The URL of a new, empty database on the cluster's PostgreSQL server: a study of its own for each test,
    whatever an earlier session on the same cluster (RNNLAB_CLUSTER_DIR) left behind."""
    import sqlalchemy

    url = cluster["RNNLAB_CLUSTER_PG_URL"]
    name = f"test_{uuid.uuid4().hex[:12]}"
    engine = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return f"{url.rsplit('/', 1)[0]}/{name}"


def sweep_command(
    storage: str, data_dir: Path, n_trials: int, *extra: str, launcher: str = "submitit_slurm"
) -> list[str]:
    """A tiny sweep whose trials are jobs of the test cluster, on ``storage``."""
    tiny = [o for o in TINY if not o.startswith("model.hidden_size")]
    return [
        sys.executable, str(ROOT / "src" / "train.py"), "-m", "hparams_search=optuna",
        f"hydra/launcher={launcher}", f"hydra.launcher.array_parallelism={PARALLEL}",
        "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2", "hydra.launcher.timeout_min=10",
        f"hydra.sweeper.storage='{storage}'", f"hydra.sweeper.n_trials={n_trials}",
        "model.hidden_size=int(interval(8, 12))",
        *tiny, f"paths.data_dir={data_dir}", *extra,
    ]  # fmt: skip


def sweep_env(cluster: dict[str, str], root: Path, **extra: str) -> dict[str, str]:
    env = {**cli_env(root), **cluster, "PYTHONPATH": str(HERE), **extra}
    env.pop("RNNLAB_BUDGET", None)  # the tiny budget caps n_trials at 2: the overrides above keep trials tiny
    return env


def slurm(cluster: dict[str, str], *args: str) -> str:
    env = {**os.environ, **cluster}
    return subprocess.run(args, env=env, capture_output=True, text=True, check=True, timeout=60).stdout


def job_states(cluster: dict[str, str], job_ids: list[str], timeout: float = 60) -> dict[str, tuple[str, str]]:
    """sacct's (state, node) of each job (accounting, as a user would ask it), once none is RUNNING any more: a
    job's result reaches the sweep a moment before its process has exited."""
    deadline = time.monotonic() + timeout
    while True:
        out = slurm(cluster, "sacct", "-n", "-X", "-P", "-j", ",".join(job_ids), "-o", "JobID,State,NodeList")
        rows = (line.split("|") for line in out.splitlines())
        states = {job: (state.split()[0], node) for job, state, node in rows}
        if time.monotonic() > deadline or not any(state in ("RUNNING", "COMPLETING") for state, _ in states.values()):
            return states
        time.sleep(1)


def trials_of(storage: str, study: str = STUDY) -> list:
    return optuna.load_study(study_name=study, storage=storage).trials


def record(sweep_dir: Path, number: int) -> dict:
    return json.loads((sweep_dir / f"trial_{number}" / "run.json").read_text())


def runs_where(cluster: dict[str, str], root: Path, clause: str) -> list[dict]:
    listed = subprocess.run(
        [sys.executable, "-m", "rnnlab.runs", "--where", clause, "--json"],
        env=sweep_env(cluster, root),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)


def test_six_trial_sweep_runs_each_trial_as_a_slurm_job(cluster, tmp_path, data_dir):
    storage = fresh_database(cluster)
    started = time.monotonic()
    swept = subprocess.run(
        sweep_command(storage, data_dir, 6),
        cwd=ROOT,
        env=sweep_env(cluster, tmp_path),
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert swept.returncode == 0, swept.stderr[-3000:]
    print(f"6-trial SLURM sweep: {time.monotonic() - started:.0f} s")
    trials = trials_of(storage)
    assert [t.state.name for t in trials] == ["COMPLETE"] * 6
    sweep_dir = tmp_path / "multirun" / "mnist1d" / STUDY
    assert (sweep_dir / "best.yaml").is_file()
    # submitit's job folders in the study's folder, not in multirun/mnist1d/None/.submitit
    assert sorted(p.name for p in (tmp_path / "multirun" / "mnist1d").iterdir()) == [STUDY]
    assert (sweep_dir / ".submitit").is_dir()

    records = [record(sweep_dir, t.number) for t in trials]
    jobs = [r["slurm"]["job_id"] for r in records]
    assert len(set(jobs)) == 6 and all(r["status"] == "completed" for r in records)
    assert {r["slurm"]["node"] for r in records} == {socket.gethostname()}
    assert all("array_task_id" in r["slurm"] for r in records)  # None: submitit submits one job, not an array
    assert job_states(cluster, jobs) == {job: ("COMPLETED", socket.gethostname()) for job in jobs}
    found = runs_where(cluster, tmp_path, f"slurm.job_id={jobs[3]}")
    assert [r["id"] for r in found] == [records[3]["id"]]


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text()):
        if process.poll() is not None:
            raise AssertionError(f"the sweep ended first ({process.returncode}): {process.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no run was held within {timeout} s")
        time.sleep(0.2)


@dataclass
class HeldSweep:
    process: subprocess.Popen  # the sweep's own process
    job: str  # the SLURM job id of the held run
    storage: str
    command: list[str]
    env: dict[str, str]


def start_held_sweep(cluster: dict[str, str], tmp_path: Path, data_dir: Path, n_trials: int, *extra: str) -> HeldSweep:
    """A sweep of ``n_trials`` on a fresh database, started and waited for until holding.py holds one of its runs
    inside fit."""
    held = tmp_path / "held"
    storage = fresh_database(cluster)
    command = sweep_command(storage, data_dir, n_trials, "+callbacks.hold._target_=holding.HoldOneRun", *extra)
    env = sweep_env(cluster, tmp_path, RNNLAB_TEST_PAUSE=str(held))
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(held, process)
    except BaseException:
        process.kill()
        raise
    return HeldSweep(process, held.read_text().strip(), storage, command, env)


def test_scancel_mid_trial_records_it_lost_and_runs_it_again(cluster, tmp_path, data_dir):
    # One trial's run is held inside fit (tests/cluster/holding.py) until its job is cancelled, as a user's
    # scancel (or the cluster's) would cut a trial short; the other trials run straight through.
    sweep = start_held_sweep(cluster, tmp_path, data_dir, 4)
    process, job, storage = sweep.process, sweep.job, sweep.storage
    try:
        slurm(cluster, "scancel", job)
        out, err = process.communicate(timeout=420)
    finally:
        process.kill()
    assert process.returncode == 0, err[-3000:]

    trials = trials_of(storage)
    lost = [t for t in trials if t.user_attrs.get("lost")]
    assert len(lost) == 1 and lost[0].state.name == "FAIL"
    assert f"SLURM job {job} ended CANCELLED" in lost[0].user_attrs["error"]
    again = [t for t in trials if t.user_attrs.get("retry_of") == lost[0].number]
    assert len(again) == 1 and again[0].state.name == "COMPLETE" and again[0].params == lost[0].params
    assert sum(t.state.name == "COMPLETE" for t in trials) == 4
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    assert f"lost: its SLURM job {job} ended CANCELLED" in out + err

    sweep_dir = tmp_path / "multirun" / "mnist1d" / STUDY
    cancelled = record(sweep_dir, lost[0].number)
    # the SIGTERM that SLURM sends before its kill stops the run (Lightning's handler, at its next batch)
    assert cancelled["slurm"]["job_id"] == job and cancelled["status"] == "interrupted"
    assert job_states(cluster, [job])[job][0] == "CANCELLED"
    assert [r["status"] for r in runs_where(cluster, tmp_path, f"slurm.job_id={job}")] == ["interrupted"]


def test_slurm_gpu_launcher_asks_the_cluster_for_a_gpu(cluster, tmp_path, data_dir):
    # conf/hydra/launcher/slurm_gpu.yaml on the test node's declared GPU (gres.conf, no device behind it): the
    # cluster accepts and schedules the request. The trial trains on CPU (the default trainer takes what it finds):
    # whether a GPU trial runs without a GPU is not the point, the request is.
    storage = fresh_database(cluster)
    command = sweep_command(storage, data_dir, 1, launcher="slurm_gpu")
    swept = subprocess.run(command, cwd=ROOT, env=sweep_env(cluster, tmp_path), capture_output=True, text=True)
    assert swept.returncode == 0, swept.stderr[-3000:]
    job = record(tmp_path / "multirun" / "mnist1d" / STUDY, 0)["slurm"]["job_id"]
    job_states(cluster, [job])  # once it has ended
    tres = slurm(cluster, "sacct", "-n", "-X", "-P", "-j", job, "-o", "AllocTRES").strip()
    assert "gres/gpu=1" in tres.split(","), tres


@pytest.mark.parametrize("epoch, continued", [(1, "from "), (0, "from the start (it had no checkpoint yet)")])
def test_requeue_mid_trial_continues_the_trial_from_its_checkpoint(cluster, tmp_path, data_dir, epoch, continued):
    # scontrol requeue, as preemption or a lost node does to a job: SLURM stops the held trial's job after its
    # first epoch (or before it: no checkpoint yet) and runs it again; the trial's run continues from its
    # last.ckpt (or trains again from the start) in its own directory, under its record.
    sweep = start_held_sweep(cluster, tmp_path, data_dir, 2, f"+callbacks.hold.epoch={epoch}", "trainer.max_epochs=3")
    process, job, storage = sweep.process, sweep.job, sweep.storage
    try:
        slurm(cluster, "scontrol", "requeue", job)
        release_requeued(cluster, job)
        out, err = process.communicate(timeout=420)
    finally:
        process.kill()
    assert process.returncode == 0, err[-3000:]

    trials = trials_of(storage)
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]  # the same trial, not a retry
    sweep_dir = tmp_path / "multirun" / "mnist1d" / STUDY
    runs = {t.number: record(sweep_dir, t.number) for t in trials}
    (number,) = [n for n, r in runs.items() if r["slurm"]["job_id"] == job]
    requeued = runs[number]
    assert requeued["status"] == "completed" and requeued["epoch"] == 3
    (entry,) = requeued["resumes"]
    assert entry["slurm"]["job_id"] == job and entry["slurm"]["restart_count"] == 1 and entry["status"] == "completed"
    assert entry["after"] == "interrupted", entry  # the SIGTERM SLURM sent stopped the run, which said so
    assert requeued["slurm"]["restart_count"] == 1
    assert trials[number].value == requeued["metrics"]["val/acc_best"]
    # continued, not trained again: every epoch once in TensorBoard, the first from the job's first start
    events = tmp_path / "logs" / "mnist1d" / "sweeps" / STUDY / f"trial_{number}"
    epochs = [step for step, _ in read_scalars(events)["val/acc"]]
    assert len(epochs) == 3 and len(set(epochs)) == 3, epochs
    assert f"continuing its run {continued}" in (sweep_dir / f"trial_{number}" / "train.log").read_text()


def release_requeued(cluster: dict[str, str], job: str, timeout: float = 60) -> None:
    """SLURM holds a requeued job back for about two minutes (``Reason=BeginTime``): once it is pending again,
    make it eligible now, as an administrator can (``scontrol update StartTime=now``)."""
    deadline = time.monotonic() + timeout
    while slurm(cluster, "squeue", "-h", "-j", job, "-o", "%T").strip() != "PENDING":
        assert time.monotonic() < deadline, f"job {job} was not requeued"
        time.sleep(0.5)
    slurm(cluster, "scontrol", "update", f"JobId={job}", "StartTime=now")


def test_a_killed_sweep_rerun_re_asks_its_running_trials_once(cluster, tmp_path, data_dir):
    # The sweep's own process killed (kill -9) while its trials run as jobs; the same command run again records
    # those trials lost and asks their parameters again, once: n_trials results, none counted twice, none RUNNING.
    sweep = start_held_sweep(cluster, tmp_path, data_dir, 4)
    job, storage = sweep.job, sweep.storage
    sweep.process.kill()
    sweep.process.communicate()
    before = trials_of(storage)
    running = [t.number for t in before if t.state.name == "RUNNING"]
    assert running, [t.state.name for t in before]
    done = sum(t.state.name == "COMPLETE" for t in before)
    rerun = subprocess.run(sweep.command, cwd=ROOT, env=sweep.env, capture_output=True, text=True, timeout=420)
    assert rerun.returncode == 0, rerun.stderr[-3000:]

    trials = trials_of(storage)
    lost = [t for t in trials if t.user_attrs.get("lost")]
    assert sorted(t.number for t in lost) == running
    assert all("its sweep process" in t.user_attrs["error"] and t.state.name == "FAIL" for t in lost)
    retries = {t.user_attrs["retry_of"]: t for t in trials if t.user_attrs.get("retry_of") is not None}
    assert sorted(retries) == running and all(retries[t.number].params == t.params for t in lost)
    counted = [t for t in trials if not t.user_attrs.get("lost")]
    assert len(counted) == 4 and all(t.state.name == "COMPLETE" for t in counted)
    assert f"{done} of 4 trials done" in rerun.stdout  # the killed sweep's running trials are lost, not done
    # the lost trials' jobs, whose results nobody would read, are cancelled by the rerun: the held one among them
    assert f"SLURM job {job} cancelled: its trial is asked again" in rerun.stdout
    assert job_states(cluster, [job])[job][0] == "CANCELLED"


def test_two_sweeps_of_one_study_from_two_shells_share_it_as_jobs(cluster, tmp_path, data_dir):
    # Two shells run the same sweep command at once, each submitting its trials to the cluster, on one
    # PostgreSQL study: unique trial numbers, one folder and one job per trial, the study's n_trials.
    storage = fresh_database(cluster)
    command = sweep_command(storage, data_dir, 4, "hydra.launcher.array_parallelism=1")
    env = sweep_env(cluster, tmp_path)
    processes = [
        subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=420)[0] for p in processes]
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]
    trials = trials_of(storage)
    # each sweep asks only while the study holds fewer than n_trials: at most one more than n_trials
    assert [t.number for t in trials] == list(range(len(trials))) and 4 <= len(trials) <= 5
    assert all(t.state.name == "COMPLETE" for t in trials)
    assert {t.user_attrs["worker"].rsplit(":", 1)[1] for t in trials} == {str(p.pid) for p in processes}
    sweep_dir = tmp_path / "multirun" / "mnist1d" / STUDY
    records = [record(sweep_dir, t.number) for t in trials]
    assert len({r["dir"] for r in records}) == len({r["slurm"]["job_id"] for r in records}) == len(trials)
    assert all(r["status"] == "completed" and r["parent"]["trial"] == t.number for r, t in zip(records, trials))


@pytest.mark.skipif(
    not os.environ.get("RNNLAB_CLUSTER_LONG"), reason="waits for a time limit: make cluster-check runs it"
)
def test_a_trial_at_its_time_limit_continues_in_the_requeued_job(cluster, tmp_path, data_dir):
    # SLURM warns a job signal_delay_s before its time limit (SIGUSR2); submitit requeues it while it may
    # (hydra.launcher.max_num_timeout) and the trial's run continues from its last.ckpt in the job run again.
    limits = ["hydra.launcher.timeout_min=1", "hydra.launcher.signal_delay_s=30", "hydra.launcher.max_num_timeout=1"]
    sweep = start_held_sweep(cluster, tmp_path, data_dir, 2, "+callbacks.hold.epoch=1", "trainer.max_epochs=3", *limits)
    process, job, storage = sweep.process, sweep.job, sweep.storage
    try:
        release_requeued(cluster, job, timeout=120)  # the warning comes 30 s into the job
        out, err = process.communicate(timeout=420)
    finally:
        process.kill()
    assert process.returncode == 0, err[-3000:]
    trials = trials_of(storage)
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"], [t.user_attrs for t in trials]
    sweep_dir = tmp_path / "multirun" / "mnist1d" / STUDY
    runs = {t.number: record(sweep_dir, t.number) for t in trials}
    (timed_out,) = [r for r in runs.values() if r["slurm"]["job_id"] == job]
    assert timed_out["status"] == "completed" and timed_out["epoch"] == 3
    (entry,) = timed_out["resumes"]
    assert entry["slurm"]["restart_count"] == 1 and entry["after"] == "interrupted", entry  # not failed
