"""What rnnlab reads from SLURM and submitit without a cluster: a job's identity from its environment (the run
record's ``slurm`` field) and a job the cluster ended from submitit's error (a lost trial). The cluster tests
check both on real jobs; these cover the spellings one node does not produce (array tasks, other states)."""

from __future__ import annotations

import pytest

from hydra_plugins.rnnlab_sweeper.trial_states import scheduler_loss
from rnnlab.runs.scheduler import slurm_job


def test_outside_slurm_there_is_no_job():
    assert slurm_job({"PATH": "/bin"}) is None and slurm_job({"SLURM_JOB_ID": ""}) is None


def test_an_array_task_is_named_as_squeue_shows_it():
    env = {
        "SLURM_JOB_ID": "1042", "SLURM_ARRAY_JOB_ID": "1040", "SLURM_ARRAY_TASK_ID": "2",
        "SLURMD_NODENAME": "gpu07", "SLURM_JOB_PARTITION": "gpu", "SLURM_RESTART_COUNT": "1",
    }  # fmt: skip
    assert slurm_job(env) == {
        "job_id": "1040_2", "array_job_id": "1040", "array_task_id": 2, "node": "gpu07", "partition": "gpu",
        "restart_count": 1,
    }  # fmt: skip


def test_a_plain_job_keeps_its_id_and_leaves_the_rest_none():
    job = slurm_job({"SLURM_JOB_ID": "77", "SLURMD_NODENAME": "n1", "SLURM_RESTART_COUNT": "x"})
    assert job == {
        "job_id": "77", "array_job_id": None, "array_task_id": None, "node": "n1", "partition": None,
        "restart_count": None,
    }  # fmt: skip


class UncompletedJobError(RuntimeError):
    """Named as submitit's (the sweeper tells it by name, so that it never imports submitit)."""


def uncompleted(job: str, state: str) -> UncompletedJobError:
    return UncompletedJobError(
        f"Job {job} (task: 0) with path /s/.submitit/{job}/{job}_0_result.pkl\n"
        f"has not produced any output (state: {state})\nNo output/error stream produced ! Check: /s/x.out"
    )


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        ("CANCELLED by 0", "lost: its SLURM job 12_3 ended CANCELLED by 0 before the trial reported"),
        ("NODE_FAIL", "lost: its SLURM job 12_3 ended NODE_FAIL before the trial reported"),
        ("PREEMPTED", "lost: its SLURM job 12_3 ended PREEMPTED before the trial reported"),
        ("FAILED", None),  # the trial's own failure
        ("OUT_OF_MEMORY", None),
    ],
)
def test_a_job_the_cluster_ended_is_lost_and_a_failed_one_is_not(state, reason):
    assert scheduler_loss(uncompleted("12_3", state)) == reason


def test_other_errors_and_results_are_not_losses():
    assert scheduler_loss(RuntimeError("has not produced any output (state: CANCELLED)")) is None  # not submitit's
    assert scheduler_loss(UncompletedJobError("Job not requeued because: timed-out too many times.")) is None
    assert scheduler_loss(0.5) is None


def test_only_a_restarted_start_of_the_same_job_continues_its_run(tmp_path, monkeypatch):
    # rnnlab.app.requeue: the run of an earlier start of this job (same id, a lower restart count) is continued;
    # another job's run, or the same start seen again, is not (the command then refuses the directory as usual).
    import json

    from rnnlab.app.requeue import Requeued, requeued_run

    run_dir = tmp_path / "trial_3"
    (run_dir / "checkpoints").mkdir(parents=True)
    record = {"schema": 1, "status": "interrupted", "slurm": {"job_id": "77", "restart_count": None}}
    (run_dir / "run.json").write_text(json.dumps(record))
    for name in ("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    assert requeued_run(run_dir) is None  # the job's first start: not a requeue
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert requeued_run(run_dir) == Requeued(run_dir, "77", 1, None)  # no checkpoint yet: from the start
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert requeued_run(run_dir) == Requeued(run_dir, "77", 1, run_dir / "checkpoints" / "last.ckpt")
    assert requeued_run(tmp_path / "elsewhere") is None
    monkeypatch.setenv("SLURM_JOB_ID", "78")
    assert requeued_run(run_dir) is None  # another job's run
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    record["slurm"]["restart_count"] = 1  # this very start wrote it
    (run_dir / "run.json").write_text(json.dumps(record))
    assert requeued_run(run_dir) is None


def test_a_rank_started_by_srun_without_hydra_run_dir_is_one_line(tmp_path):
    # srun starts each rank as its own command: without one hydra.run.dir each would make its own run directory
    from helpers import ROOT, cli_env
    from inprocess import run_main

    env = {**cli_env(tmp_path), "SLURM_PROCID": "1"}
    result = run_main([str(ROOT / "src" / "train.py")], env=env, cwd=str(ROOT))  # in this process
    assert result.returncode == 1 and result.stderr.splitlines() == [
        "error: rank 1 has no hydra.run.dir; allowed: give every rank the same hydra.run.dir=<run dir> (srun "
        "starts each rank as its own command, e.g. slurm/ddp.sbatch)"
    ]
    assert not (tmp_path / "logs").exists()


def test_submitits_requeue_exit_is_an_interruption_not_a_failure():
    # submitit's handler of SLURM's warning signal requeues the job, then sys.exit(-1) inside the run
    from rnnlab.runs.record import fate

    def checkpoint_and_try_requeue():  # submitit.core.job_environment.SignalHandler's, by name
        raise SystemExit(-1)

    try:
        checkpoint_and_try_requeue()
    except SystemExit as error:
        status, line = fate(error)
    assert status == "interrupted" and line.startswith("its SLURM job was requeued")
    assert fate(SystemExit(-1)) == ("failed", "-1")
