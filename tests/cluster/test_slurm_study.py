"""A study whose sweeps and confirm runs are SLURM jobs (``study.launcher=slurm``), on the real throwaway cluster of
conftest.py: it finishes with its report, and every trial's and confirm run's record names a job that ``sacct``
knows, completed, under the study's names."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from test_slurm_sweep import job_states

from helpers import ROOT, cli_env
from rnnlab.runs.store import find_records

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def test_a_slurm_study_runs_every_trial_and_confirm_run_as_a_job(cluster, tmp_path, data_dir):
    env = {**cli_env(tmp_path), **cluster, "RNNLAB_BUDGET": "tiny"}  # 2 trials per cell, 2 seeds, 1-2 epochs
    command = [sys.executable, str(ROOT / "src" / "study.py"), "study.launcher=slurm", "study.cells=[gru,lstm]"]
    started = time.monotonic()
    done = subprocess.run(
        [*command, f"paths.data_dir={data_dir}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    print(f"tiny SLURM study (2 cells): {time.monotonic() - started:.0f} s")
    study = tmp_path / "multirun" / "study" / "mnist1d" / "default"
    assert (study / "report.md").is_file() and "| gru |" in (study / "report.md").read_text()

    confirms = find_records(study / "confirm")
    trials = find_records(study / "tune")
    assert len(confirms) == 4 and len(trials) == 4  # 2 cells × 2 seeds; 2 cells × 2 trials
    records = [*confirms, *trials]
    assert all(r["status"] == "completed" and r["slurm"] and r["slurm"]["job_id"] for r in records)
    jobs = [r["slurm"]["job_id"] for r in records]
    assert len(set(jobs)) == len(jobs)
    assert {state for state, _ in job_states(cluster, jobs).values()} == {"COMPLETED"}
    named = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-j", ",".join(jobs), "-o", "JobID,JobName"],
        env={**env, **cluster},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = dict(line.split("|") for line in named.splitlines())
    for record in confirms:  # confirm/<cell>-<digest>/seed<k>: job default-<cell>-seed<k>
        cell, seed = record["dir"].split("/")[-2].split("-")[0], record["dir"].split("/")[-1]
        assert names[record["slurm"]["job_id"]] == f"default-{cell}-{seed}"
    assert {names[r["slurm"]["job_id"]] for r in trials} == {"default-gru", "default-lstm"}
