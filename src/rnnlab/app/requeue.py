"""A SLURM job that SLURM started again continues its run: rnnlab's own resume, not Lightning's.

SLURM requeues a job (preemption, a lost node, ``scontrol requeue``) by stopping it and later running the same
job again, with the same job id and ``SLURM_RESTART_COUNT`` one higher: a sweep trial's job runs its trial's
command once more, into the same run directory. That directory then holds the run the job's earlier start
began; it continues from the run's ``last.ckpt`` through the resume path a user's ``ckpt_path=`` takes (its
checks, its record: a new ``resumes`` entry naming the restart). SLURM starts a requeued job only once its
earlier start has ended, so no other process writes that run. Lightning's own requeue (``hpc_ckpt_<n>.ckpt``,
written and restored by its SLURM signal handler) would bypass those checks: it is off (``lightning_plugins``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnnlab.runs.scheduler import slurm_job
from rnnlab.runs.store import read_record


@dataclass(frozen=True)
class Requeued:
    """This job's earlier start's run, to continue: from ``checkpoint``, or from the start where the job was
    stopped before the run's first checkpoint (None)."""

    run_dir: Path
    job_id: str
    restart: int
    checkpoint: Path | None


def requeued_run(run_dir: Path) -> Requeued | None:
    """The run in ``run_dir`` when this process is a requeued SLURM job and an earlier start of this same job
    began that run; None otherwise (a new run, a user's resume, any process outside SLURM)."""
    job = slurm_job()
    if job is None or not job["restart_count"]:
        return None
    try:
        record = read_record(run_dir)
    except (FileNotFoundError, ValueError):
        return None
    earlier: dict[str, Any] = record.get("slurm") or {}
    if earlier.get("job_id") != job["job_id"] or (earlier.get("restart_count") or 0) >= job["restart_count"]:
        return None
    last = run_dir / "checkpoints" / "last.ckpt"
    return Requeued(run_dir, job["job_id"], int(job["restart_count"]), last if last.is_file() else None)


def lightning_plugins() -> list[Any]:
    """The trainer's plugins: in a SLURM job step, Lightning's SLURM environment (ranks, nodes) with its
    automatic requeue off (``SLURMEnvironment(auto_requeue=False)``, where Lightning would choose it)."""
    from pytorch_lightning.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    if TorchElasticEnvironment.detect() or not SLURMEnvironment.detect():
        return []
    return [SLURMEnvironment(auto_requeue=False)]
