"""A comparison (``make compare``) whose runs are SLURM jobs (hydra/launcher=submitit_slurm: one job array), on the
real throwaway cluster: every cell × seed run is an array task, its record names it, and the report is written."""

from __future__ import annotations

import subprocess
import sys

import pytest
from test_slurm_sweep import job_states

from helpers import ROOT, cli_env
from rnnlab.runs.store import find_records

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def test_make_compare_runs_each_cell_and_seed_as_an_array_task(cluster, tmp_path, data_dir):
    env = {**cli_env(tmp_path), **cluster, "RNNLAB_BUDGET": "tiny"}  # 2 seeds, 2 epochs of 3 batches
    command = [
        sys.executable, str(ROOT / "src" / "train.py"), "-m", "experiment=compare_cells",
        "hydra/launcher=submitit_slurm", "hydra.launcher.array_parallelism=2", "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.mem_gb=2", "hydra.launcher.timeout_min=10", "threads=1", f"paths.data_dir={data_dir}",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=420)
    assert done.returncode == 0, done.stderr[-3000:]
    (compare_dir,) = (tmp_path / "multirun" / "compare" / "mnist1d").iterdir()
    assert "| lstm-builtin-h8 | 1 |" in (compare_dir / "report.md").read_text()
    records = find_records(compare_dir)
    assert len(records) == 6 and all(r["status"] == "completed" for r in records)  # 3 cells × 2 seeds
    jobs = [r["slurm"]["job_id"] for r in records]
    (array,) = {r["slurm"]["array_job_id"] for r in records}
    assert sorted(r["slurm"]["array_task_id"] for r in records) == list(range(6))
    assert sorted(jobs) == sorted(f"{array}_{index}" for index in range(6))  # as squeue and sacct name them
    assert {state for state, _ in job_states(cluster, jobs).values()} == {"COMPLETED"}
