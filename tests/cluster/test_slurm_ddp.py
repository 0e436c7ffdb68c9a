"""One run trained with DDP as SLURM tasks (slurm/ddp.sbatch, as a user submits it) on the throwaway cluster:
2 tasks on the one node, Lightning's SLURM environment; it trains, logs once, and its logged metrics are those of
a one-process evaluation of its checkpoints (as tests/test_scaling.py checks for trainer=ddp_sim)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from helpers import ROOT, TINY, cli_env, read_scalars
from test_scaling import scores_on

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def test_the_ddp_sbatch_script_trains_one_run_on_two_slurm_tasks(cluster, tmp_path, data_dir):
    run_dir = tmp_path / "ddp-run"
    out = tmp_path / "job.out"
    env = {**cli_env(tmp_path), **cluster}
    env.pop("RNNLAB_BUDGET", None)
    tiny = [o for o in TINY if o != "threads=1"]
    submitted = subprocess.run(
        ["sbatch", "--wait", "--parsable", f"--output={out}", "slurm/ddp.sbatch", str(run_dir), *tiny,
         f"paths.data_dir={data_dir}"],
        cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    printed = out.read_text() if out.exists() else ""
    assert submitted.returncode == 0, submitted.stderr + printed[-3000:]
    job = submitted.stdout.strip().split(";")[0]
    summaries = [line for line in printed.splitlines() if line.startswith("[rnnlab] lstm-builtin-h8 params=")]
    assert len(summaries) == 1, printed[-3000:]  # one summary line, from rank 0

    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "completed" and record["slurm"]["job_id"] == job
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in (run_dir / "train.log").read_text()  # rank 1 ran (srun: one log)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "data") == ["ddp-run", "job.out"]
    events = list(run_dir.rglob("events.out.tfevents.*"))
    assert len({path.name.rsplit(".", 2)[-2] for path in events}) == 1  # one writing process (its pid)
    scalars = read_scalars(run_dir)
    val_acc, val_loss = scores_on(run_dir, "last.ckpt", "val")  # the whole split, here in one process
    assert scalars["val/acc"][0][1] == pytest.approx(val_acc, abs=1e-6)
    assert scalars["val/loss"][0][1] == pytest.approx(val_loss, abs=1e-5)
    (test_acc,) = [v for _, v in scalars["test/acc"]]
    assert test_acc == pytest.approx(scores_on(run_dir, "best-epoch000.ckpt", "test")[0], abs=1e-6)
