"""Which batch-scheduler job a process runs in (SLURM): what a run's record names so that a run can be found
from ``squeue``/``sacct`` and back (``rnnlab runs --where slurm.job_id=1234``). Stdlib only, read from the
environment SLURM gives every job step; None outside a SLURM job."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

# record key -> the SLURM variable it is read from (sbatch(1), "OUTPUT ENVIRONMENT VARIABLES")
SLURM_VARIABLES = {
    "array_job_id": "SLURM_ARRAY_JOB_ID",
    "array_task_id": "SLURM_ARRAY_TASK_ID",
    "node": "SLURMD_NODENAME",
    "partition": "SLURM_JOB_PARTITION",
    "restart_count": "SLURM_RESTART_COUNT",
}
NUMBERS = ("array_task_id", "restart_count")


def slurm_job(environ: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """``{"job_id", "array_job_id", "array_task_id", "node", "partition", "restart_count"}`` of the SLURM job
    this process runs in, or None outside one. ``job_id`` is the id ``squeue``/``sacct``/``scancel`` take:
    ``<array job>_<index>`` for an array task, else ``SLURM_JOB_ID``; what SLURM does not set is None."""
    env = os.environ if environ is None else environ
    raw_id = env.get("SLURM_JOB_ID")
    if not raw_id:
        return None
    job: dict[str, Any] = {key: env.get(variable) or None for key, variable in SLURM_VARIABLES.items()}
    for key in NUMBERS:
        try:
            job[key] = int(job[key]) if job[key] is not None else None
        except ValueError:
            job[key] = None
    array = job["array_job_id"] is not None and job["array_task_id"] is not None
    return {"job_id": f"{job['array_job_id']}_{job['array_task_id']}" if array else raw_id, **job}
